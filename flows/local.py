"""Prefect in a local process: a temporary server that dies with the run and serves its workers.

Set up when this module is imported, which every flow module does (``flows`` itself stays free of
Prefect), so the ``eamm`` CLI, ``python -m flows...`` and a worker's flow-run process behave alike
(failures in one line: ``tasks.console``).
"""

from __future__ import annotations

import os
import subprocess
from types import ModuleType

from eamm.errors import EammError
from eamm.runtime import prefect_api_configured, require_writable_prefect_home
from eamm.watchdog import spawn
from tasks.console import quiet_failure_tracebacks


class _OwnSession:
    """The ``subprocess`` module as Prefect's server module sees it, whose ``Popen`` starts the
    server in a session of its own: a terminal's Ctrl-C (or ``kill -INT -PGID``) goes to the
    whole foreground process group, and killed the server with the run, which then hung
    reporting to it instead of stopping in one line. The run stops it (atexit, watchdog)."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str) -> object:
        return getattr(self._module, name)

    def Popen(self, *args: object, **kwargs: object) -> subprocess.Popen:
        return self._module.Popen(*args, **kwargs, start_new_session=True)


API_PROBE_SECONDS = 10.0


def require_answering_api() -> None:
    """Where ``PREFECT_API_URL`` names a server, check it answers at all (any HTTP status: a
    Cloud URL wants a key) before a flow starts: one that accepts connections and never
    replies held a command for 7 minutes of Prefect's retries before the one line."""
    import httpx

    url = os.environ["PREFECT_API_URL"].rstrip("/")
    try:
        httpx.get(f"{url}/health", timeout=API_PROBE_SECONDS)
    except httpx.HTTPError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EammError(
            f"PREFECT_API_URL {url}: no Prefect server answers ({reason}); start it (`prefect "
            "server start`, docs/operations.md) or unset PREFECT_API_URL to run with a "
            "temporary one"
        ) from None


def tie_temporary_server() -> None:
    """Give each temporary Prefect server Prefect starts a watchdog (``eamm.watchdog``).

    Prefect 3 runs it as a plain ``uvicorn`` child (``SubprocessASGIServer``) stopped by an
    atexit hook, which a SIGKILL skips. Its address goes into ``PREFECT_API_URL`` of this
    process's environment, so process-pool workers started later report to it instead of each
    starting a temporary server of its own. Nothing to do when ``PREFECT_API_URL`` names a server.
    """
    if prefect_api_configured():
        require_answering_api()
        return
    require_writable_prefect_home()
    import prefect.server.api.server as server_module
    from prefect.server.api.server import SubprocessASGIServer

    if not isinstance(server_module.subprocess, _OwnSession):
        server_module.subprocess = _OwnSession(server_module.subprocess)
    start = SubprocessASGIServer._run_uvicorn_command
    if getattr(start, "watched", False):
        return

    def start_watched(self: SubprocessASGIServer):
        process = start(self)
        spawn(process.pid, f"--port {self.port}")
        os.environ.setdefault("PREFECT_API_URL", self.api_url)
        return process

    start_watched.watched = True
    SubprocessASGIServer._run_uvicorn_command = start_watched


quiet_failure_tracebacks()
tie_temporary_server()
