"""Task runner from a params/CLI string: threads, processes, or a Dask scheduler address."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.errors import EammError
from eamm.watchdog import exit_with_parent
from tasks.console import quiet_failure_tracebacks

# Set on a machine or in a deployment's job variables, it wins over params.yaml and --runner: an
# operator points every preprocess run there at a Dask cluster without editing tracked files.
RUNNER_ENV = "EAMM_TASK_RUNNER"
# How long a Dask scheduler may take to accept a connection before the run is refused.
CONNECT_TIMEOUT_S = 5.0
DASK_DEFAULT_PORT = 8786  # where Dask looks when the address names none


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _process_worker() -> None:
    """A spawned worker: its console set up like the flow's process (failures in one line),
    and gone with the flow's process, even after ``kill -9`` (it was left running, orphaned)."""
    quiet_failure_tracebacks()
    exit_with_parent()


def check_scheduler(address: str, named: str) -> None:
    """A Dask scheduler that does not answer is refused now, in one line naming where the
    address came from: not after Dask's own 30 s timeout, with the run's index written."""
    parts = urlsplit(address)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise EammError(f"runner {address} ({named}): not a valid address") from None
    if parts.scheme not in ("tcp", "tls") or not host:
        return  # other transports (inproc, ucx) are Dask's to check
    port = DASK_DEFAULT_PORT if port is None else port
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise EammError(
            f"runner {address} ({named}): no Dask scheduler answers at {host}:{port} ({reason})"
        ) from None


def make_task_runner(runner: str, workers: int | None = None, named: str = "runner"):
    """The task runner ``runner`` names; ``named`` says where the setting came from (an option
    or a params key), for the one-line error when it is wrong."""
    from_env = os.environ.get(RUNNER_ENV, "").strip()  # wins when set (non-empty)
    runner = from_env or runner
    named = f"${RUNNER_ENV}" if from_env else named
    workers = workers or default_workers()
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "processes":
        return ProcessPoolTaskRunner(max_workers=workers, initializer=_process_worker)
    if "://" in runner:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise EammError(
                f"runner {runner}: Dask needs the [dask] extra (pip install -e '.[dask]')"
            ) from None
        check_scheduler(runner, named)
        return DaskTaskRunner(address=runner)
    raise EammError(
        f"unknown runner '{runner}' ({named}): use threads, processes or a Dask address"
    )
