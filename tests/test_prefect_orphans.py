"""A run killed with SIGKILL takes its temporary Prefect server with it (issue 15, item 10).

Real processes throughout: a flow run in a subprocess starts Prefect's temporary server, the run
is killed with ``kill -9`` while the flow is running, and the server must be gone in seconds
(before the fix it lived on, reparented to init, about 236 MB each).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

SERVER = "prefect.server.api.server:create_app"

FLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import flows.local  # noqa: F401  (what every flow module imports: Prefect's set-up)
    from prefect import flow

    @flow
    def sleeper(marker: str) -> None:
        Path(marker).write_text("running")
        time.sleep(300)

    sleeper(sys.argv[1])
    """
)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def cmdline(process: psutil.Process) -> list[str]:
    """The process's command line; [] for one that has just exited (a child not yet reaped by
    its parent is a zombie, whose command line cannot be read)."""
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:  # ZombieProcess included
        return []


def servers_of(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if SERVER in " ".join(cmdline(p))]


@pytest.mark.slow
def test_killed_flow_run_takes_its_temporary_server_with_it(tmp_path: Path) -> None:
    marker = tmp_path / "running"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    run = subprocess.Popen(
        [sys.executable, "-c", FLOW_RUN, str(marker)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: marker.exists() or run.poll() is not None, 180, "the flow to start")
        assert run.poll() is None, run.stderr.read().decode()[-2000:]
        (server,) = servers_of(run.pid)
        watchdogs = [p for p in psutil.Process(run.pid).children() if "eamm.watchdog" in cmdline(p)]
        assert len(watchdogs) == 1
        run.send_signal(signal.SIGKILL)
        run.wait()
        _, alive = psutil.wait_procs([server, *watchdogs], timeout=10)
        assert not alive, f"still running after the run was killed: {alive}"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for leftover in servers_of(run.pid):
            leftover.kill()


@pytest.mark.slow
def test_killed_with_prefect_server_script_takes_its_server_with_it() -> None:
    """``scripts/with_prefect_server.sh`` (``make demo``) killed while its command runs."""
    started: list[psutil.Process] = []
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    script = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "with_prefect_server.sh"), "sleep", "300"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def children() -> list[psutil.Process]:
            return psutil.Process(script.pid).children() if script.poll() is None else []

        def command_running() -> bool:
            sleeping = any(cmdline(p)[:1] == ["sleep"] for p in children())
            return sleeping or script.poll() is not None

        wait_for(command_running, 180, "the server to answer and the command to start")
        assert script.poll() is None, script.stderr.read().decode()[-2000:]
        started = children()
        (server,) = [p for p in started if "server" in cmdline(p)[2:4]]
        script.send_signal(signal.SIGKILL)
        script.wait()
        _, alive = psutil.wait_procs([server], timeout=10)
        assert not alive, "the Prefect server outlived the killed script"
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        for process in started:  # the command itself (sleep) is orphaned by design
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def test_watchdog_never_signals_a_process_that_is_not_its_child(tmp_path: Path) -> None:
    """A reused pid (the marker missing from its command line) is left alone."""
    from eamm.watchdog import running, stop

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_for(lambda: running(other.pid, "time.sleep(30)"), 10, "the process to start")
        stop(other.pid, "prefect.server.api.server:create_app")
        assert other.poll() is None
        stop(other.pid, "time.sleep(30)")
        assert other.wait(timeout=10) == -signal.SIGTERM
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
