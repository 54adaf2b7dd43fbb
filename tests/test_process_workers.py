"""Process-pool task workers (``preprocess_run.runner: processes``) behave like the flow's process
(issue 15): a failed task is one line without a traceback, and the workers report to the run's
temporary Prefect server instead of each starting one of their own (5-10 s and ~236 MB apiece)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The flow module is imported inside main(), as the eamm CLI imports its flows: the spawned
# workers, which re-import the main module, do not get the flow process's set-up from it.
SCRIPT = """
def main():
    import flows  # noqa: F401
    from prefect import flow, task

    from flows.runners import make_task_runner

    @task(retries=0)
    def boom(x: int) -> int:
        raise ValueError(f"bad clip {x}")

    @flow(task_runner=make_task_runner("processes", 2))
    def run():
        return [f.result(raise_on_failure=False) for f in [boom.submit(i) for i in range(2)]]

    run()


if __name__ == "__main__":
    main()
"""


def _run(tmp_path: Path, debug: bool) -> str:
    script = tmp_path / "failing_flow.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "EAMM_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    if debug:
        env["EAMM_DEBUG"] = "1"
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_failed_task_in_a_worker_is_one_line_and_workers_share_the_server(tmp_path: Path) -> None:
    output = _run(tmp_path, debug=False)
    assert output.count("bad clip") >= 2  # both failures are reported ...
    assert "Traceback" not in output  # ... in one line each
    assert output.count("Starting temporary server") == 1


@pytest.mark.slow
def test_debug_shows_worker_tracebacks(tmp_path: Path) -> None:
    assert "Traceback" in _run(tmp_path, debug=True)


SLEEPING = """
def main():
    import flows  # noqa: F401
    from prefect import flow, task

    from flows.runners import make_task_runner

    @task(retries=0)
    def nap(x: int) -> int:
        import os, pathlib, time
        pathlib.Path(f"worker{x}.pid").write_text(str(os.getpid()))
        time.sleep(120)
        return x

    @flow(task_runner=make_task_runner("processes", 2))
    def run():
        return [f.result() for f in [nap.submit(i) for i in range(2)]]

    run()


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_workers_go_with_a_killed_flow(tmp_path: Path) -> None:
    """kill -9 of the flow left its process-pool workers running, reparented to init."""
    import signal
    import time

    from eamm.watchdog import running

    (tmp_path / "sleeping_flow.py").write_text(SLEEPING)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "EAMM_DEBUG")}
    env["PYTHONPATH"] = str(ROOT)
    flow = subprocess.Popen(
        [sys.executable, "sleeping_flow.py"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pids = [tmp_path / f"worker{i}.pid" for i in range(2)]
    deadline = time.monotonic() + 120
    while not all(p.is_file() and p.read_text() for p in pids):
        assert flow.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in pids]
    assert all(running(pid, "python") for pid in workers)
    flow.send_signal(signal.SIGKILL)
    flow.wait()
    deadline = time.monotonic() + 10
    while any(running(pid, "python") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if running(pid, "python")]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left
