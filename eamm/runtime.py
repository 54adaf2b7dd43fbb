"""Process-wide defaults for running offline: project-local Prefect home, telemetry off.

Called by the CLI and by ``flows`` before Prefect is imported, so every entry point (``eamm``,
``dvc repro``, ``python -m flows...``) gets the same settings. Values already set win, which is
how users point the same flows at a running ``prefect server`` (``PREFECT_API_URL``).
"""

from __future__ import annotations

import os
from pathlib import Path

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}


def project_root(start: Path | None = None) -> Path:
    """``$EAMM_PROJECT_ROOT``, else the nearest folder above ``start`` holding dvc.yaml."""
    if os.environ.get("EAMM_PROJECT_ROOT"):
        return Path(os.environ["EAMM_PROJECT_ROOT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def configure_environment(root: Path | None = None) -> dict[str, str]:
    """Set offline defaults where unset; returns the effective values."""
    root = root or project_root()
    defaults = {
        **TELEMETRY_OFF,
        "PREFECT_HOME": str(root / ".prefect"),
        # The ephemeral API's default 20 s start-up budget is too short on a busy 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in defaults}
