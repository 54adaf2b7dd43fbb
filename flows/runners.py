"""Task runner from a params/CLI string: threads, processes, or a Dask scheduler address."""

from __future__ import annotations

import os

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.errors import EammError
from eamm.watchdog import exit_with_parent
from tasks.console import quiet_failure_tracebacks

# Set on a machine or in a deployment's job variables, it wins over params.yaml and --runner: an
# operator points every preprocess run there at a Dask cluster without editing tracked files.
RUNNER_ENV = "EAMM_TASK_RUNNER"


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _process_worker() -> None:
    """A spawned worker: its console set up like the flow's process (failures in one line),
    and gone with the flow's process, even after ``kill -9`` (it was left running, orphaned)."""
    quiet_failure_tracebacks()
    exit_with_parent()


def make_task_runner(runner: str, workers: int | None = None):
    from_env = os.environ.get(RUNNER_ENV, "").strip()  # wins when set (non-empty)
    runner = from_env or runner
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
        return DaskTaskRunner(address=runner)
    source = f" (from ${RUNNER_ENV})" if from_env else ""
    raise EammError(f"unknown runner '{runner}'{source}: use threads, processes or a Dask address")
