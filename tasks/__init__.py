"""Prefect tasks: thin wrappers around ``eamm`` library calls (retries, logging, batching)."""

from eamm.runtime import configure_environment

# Task runners may import this package in fresh worker processes: same offline settings there.
configure_environment()

from tasks.console import quiet_failure_tracebacks  # noqa: E402

quiet_failure_tracebacks()
