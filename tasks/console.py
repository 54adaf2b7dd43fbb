"""Prefect's console output in one line per failure, in the flow's process and in every task
worker process (``tasks`` sets it up on import, so process-pool and Dask workers do too)."""

from __future__ import annotations

import logging

from eamm.runtime import debug_enabled

# How Prefect's engine logs a run's end in a failed state: the error message again.
FAILED_STATE = "Finished in state Failed("


class OneLineFailures(logging.Filter):
    """Keeps Prefect's tracebacks of a failed task or flow run off the console, and the flow
    run's line repeating the error as its final state.

    The flow's caller reports the error in one line (``flows.cli.main``); a failed task's
    final-state line stays, as the one report of a failure the flow goes on from. The Prefect
    API's log (the UI) still gets the tracebacks and states, and ``--debug`` (``$EAMM_DEBUG``)
    shows them here too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect") or debug_enabled():
            return True
        if record.exc_info and record.levelno >= logging.ERROR:
            return False
        flow_end = record.name.startswith("prefect.flow_runs")
        return not (flow_end and record.getMessage().startswith(FAILED_STATE))


def quiet_failure_tracebacks() -> None:
    """Add ``OneLineFailures`` to Prefect's console handlers (once)."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, OneLineFailures) for f in handler.filters
        ):
            handler.addFilter(OneLineFailures())
