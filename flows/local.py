"""Prefect in a local process: failures in one line, a temporary server that dies with the run.

Both are set up when ``flows`` is imported, so the ``eamm`` CLI, ``python -m flows...`` and a
worker's flow-run process behave alike.
"""

from __future__ import annotations

import logging

from eamm.runtime import debug_enabled, prefect_api_configured
from eamm.watchdog import spawn


class OneLineFailures(logging.Filter):
    """Keeps Prefect's tracebacks of a failed task or flow run off the console.

    The run's caller reports the error in one line (``eamm.cli.main``); the Prefect API's log (the
    UI) still gets the traceback, and ``--debug`` (``$EAMM_DEBUG``) shows it here too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        failure = record.exc_info and record.levelno >= logging.ERROR
        return not (failure and record.name.startswith("prefect") and not debug_enabled())


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


def tie_temporary_server() -> None:
    """Give each temporary Prefect server Prefect starts a watchdog (``eamm.watchdog``).

    Prefect 3 runs it as a plain ``uvicorn`` child (``SubprocessASGIServer``) stopped by an
    atexit hook, which a SIGKILL skips. Nothing to do when ``PREFECT_API_URL`` names a server.
    """
    if prefect_api_configured():
        return
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer._run_uvicorn_command
    if getattr(start, "watched", False):
        return

    def start_watched(self: SubprocessASGIServer):
        process = start(self)
        spawn(process.pid, f"--port {self.port}")
        return process

    start_watched.watched = True
    SubprocessASGIServer._run_uvicorn_command = start_watched
