"""Prefect flows composing the tasks in ``tasks/``; each DVC stage runs one of them through the
``eamm`` command line (``flows/cli.py``).

Importing the package imports no Prefect, so ``eamm`` starts in a fraction of a second (the
single-clip commands never load Prefect); every flow module imports ``flows.local``, which sets
Prefect up before a flow runs.
"""

from eamm.runtime import configure_environment

# Before any Prefect import: project-local PREFECT_HOME and telemetry off (see eamm.runtime).
configure_environment()
