"""Prefect flows composing the tasks in ``tasks/``; each DVC stage runs one of them."""

from eamm.runtime import configure_environment

# Before any Prefect import: project-local PREFECT_HOME and telemetry off (see eamm.runtime).
configure_environment()

from flows.local import tie_temporary_server  # noqa: E402
from tasks.console import quiet_failure_tracebacks  # noqa: E402

quiet_failure_tracebacks()
tie_temporary_server()
