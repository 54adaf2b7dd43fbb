"""Process-wide defaults for running offline, and where a command finds its settings.

``configure_environment`` is called by the CLI and by ``flows`` before Prefect is imported, so
every entry point (``eamm``, ``dvc repro``, ``python -m flows...``) gets the same settings. Values
already set win, which is how users point the same flows at a running ``prefect server``
(``PREFECT_API_URL``).

Settings: ``--params``, else ``params.yaml`` in the working folder or the project, else the
defaults the package carries (the pydantic models in ``eamm.config``); checkpoints likewise
(``--checkpoints``, else ``models/`` there), so the CLI works from any folder.
"""

from __future__ import annotations

import errno
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from eamm.errors import EammError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from eamm.config import GenerateParams, PreprocessParams

    Section = TypeVar("Section", bound=BaseModel)

# "1" (set by `eamm --debug`, inherited by child processes): tracebacks on, not one-line errors.
DEBUG_ENV = "EAMM_DEBUG"

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


def require_writable_prefect_home() -> None:
    """Refuse a ``PREFECT_HOME`` that cannot be written (a read-only clone, a file, another
    user's folder): the temporary Prefect server keeps its database there, and Prefect restarts
    a server that fails to open it without end (a traceback every few seconds, forever)."""
    if os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):  # the database lives elsewhere
        return
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    try:
        if home.exists() and not home.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder")
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
        database = home / "prefect.db"
        if database.exists() and not os.access(database, os.W_OK):
            raise PermissionError(errno.EACCES, f"{database.name} is read-only")
    except OSError as err:
        raise EammError(
            f"{home}: Prefect's home folder cannot be written ({err.strerror or err}); set "
            "PREFECT_HOME to a writable folder (the temporary Prefect server keeps its "
            "database there)"
        ) from None


def debug_enabled() -> bool:
    """Whether ``--debug`` (``$EAMM_DEBUG``) asked for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def prefect_api_configured() -> bool:
    """Whether ``PREFECT_API_URL`` names a server; else running a flow starts a temporary one."""
    return bool(os.environ.get("PREFECT_API_URL"))


def find_in_project(name: str) -> Path | None:
    """``name`` in the working folder, else in the project root; None where neither has it."""
    for folder in dict.fromkeys((Path.cwd(), project_root())):
        if (folder / name).exists():
            return folder / name
    return None


def params_file(given: Path | None) -> Path | None:
    """``--params``, else the working folder's or the project's params.yaml; None: defaults."""
    if given is not None:
        if not given.is_file():
            raise EammError(f"{given}: params file not found (--params)")
        return given
    found = find_in_project("params.yaml")
    return found if found is not None and found.is_file() else None


def checkpoints_folder(given: Path | None) -> Path:
    """``--checkpoints``, else ``models/`` in the working folder or the project."""
    if given is not None:
        if given.is_file():
            raise EammError(
                f"{given}: a file; --checkpoints takes the folder holding the stage folders "
                "(fomm/, a2fd/, ...)"
            )
        if not given.is_dir():
            raise EammError(f"{given}: checkpoint folder not found (--checkpoints)")
        return given
    folders = [f / "models" for f in dict.fromkeys((Path.cwd(), project_root()))]
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        raise EammError(f"{Path.cwd() / 'models'}: no checkpoint folder; pass --checkpoints DIR")
    # the one holding FOMM's checkpoint: run from the repository's eamm/, ./models is the
    # Python package of the networks, not checkpoints
    return next((f for f in folders if (f / "fomm" / "checkpoint.pt").is_file()), folders[0])


def load_settings(path: Path | None, section: str, model: type[Section]) -> Section:
    """``section`` of the params file at ``path`` (validated), or ``model``'s defaults."""
    from eamm.config import load_section

    return model() if path is None else load_section(path, section, model)


@dataclass(frozen=True)
class GenerateSettings:
    """What generation reads from params, loaded once by the CLI and the flow alike."""

    params: GenerateParams
    preprocess: PreprocessParams
    model: dict  # the raw `model` section: profiles for checkpoints that do not carry theirs

    @property
    def arguments(self) -> dict:
        """Keyword arguments of ``eamm.generate.generate`` (the task's function too)."""
        return {"params": self.params, "preprocess": self.preprocess, "fallback_model": self.model}


def generate_settings(path: Path | None) -> GenerateSettings:
    """The ``generate``, ``preprocess`` and ``model`` sections (defaults without a file)."""
    from eamm.config import GenerateParams, PreprocessParams, read_params

    generate = load_settings(path, "generate", GenerateParams)
    preprocess = load_settings(path, "preprocess", PreprocessParams)
    model = read_params(path).get("model", {}) if path else {}
    return GenerateSettings(generate, preprocess, model)
