"""Prefect's console output in one line per failure, in the flow's process and in every task
worker process (``tasks`` sets it up on import, so process-pool and Dask workers do too)."""

from __future__ import annotations

import logging

from eamm.runtime import debug_enabled

# How Prefect's engine logs a run's end in a failed state: the error message again.
FAILED_STATE = "Finished in state Failed("


class OneLineFailures(logging.Filter):
    """Keeps Prefect's tracebacks of a failed task or flow run off the console, and its lines
    repeating the error as the run's final state.

    The run's caller reports the error in one line (``flows.cli.main``); the Prefect API's log (the
    UI) still gets the traceback and the state, and ``--debug`` (``$EAMM_DEBUG``) shows them here
    too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect") or debug_enabled():
            return True
        failure = record.exc_info and record.levelno >= logging.ERROR
        return not (failure or record.getMessage().startswith(FAILED_STATE))


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
