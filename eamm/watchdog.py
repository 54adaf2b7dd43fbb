"""Stop a helper process once the process that started it is gone, even after ``kill -9``.

Prefect's temporary API server (and the one ``scripts/with_prefect_server.sh`` starts) is a plain
child process: a run killed with SIGKILL never runs its exit hooks, so the server (about 236 MB)
would live on, reparented to init. A watchdog started beside it polls its own parent pid; when
that changes, the starter has died, and the watchdog stops the server. Standard library only, so
it costs milliseconds and a few MB.

    python -m eamm.watchdog PARENT_PID CHILD_PID MARKER
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.25
GRACE_S = 5.0


def running(pid: int, marker: str) -> bool:
    """Whether ``pid`` is alive and still the process meant: its command line holds ``marker``.

    A pid reused by another program, a zombie and an exited process all read as not running.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline.replace(b"\0", b" ")


def stop(pid: int, marker: str) -> None:
    """SIGTERM, then SIGKILL after ``GRACE_S``; never signals a process not matching ``marker``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not running(pid, marker):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + GRACE_S
        while running(pid, marker) and time.monotonic() < deadline:
            time.sleep(0.05)


def watch(parent: int, child: int, marker: str) -> None:
    """Until ``child`` exits: when our parent is no longer ``parent``, stop ``child``."""
    while running(child, marker):
        if os.getppid() != parent:
            stop(child, marker)
            return
        time.sleep(POLL_S)


def exit_with_parent() -> threading.Thread:
    """In a worker process: a daemon thread that ends the process once its parent is gone. A
    process-pool worker of a flow killed with SIGKILL was reparented to init and went on with
    its tasks for minutes (its results lost); the next run redoes their clips anyway."""
    parent = os.getppid()

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        os._exit(1)  # no cleanup to run: the flow that would collect its results is gone

    thread = threading.Thread(target=poll, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def spawn(child: int, marker: str) -> subprocess.Popen:
    """Start a watchdog that stops ``child`` when this process dies.

    Its own session keeps a terminal's Ctrl-C (meant for the run) from killing it first.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "eamm.watchdog", str(os.getpid()), str(child), marker],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run; its end is our cue
    watch(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
