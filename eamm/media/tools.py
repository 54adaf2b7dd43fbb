"""Locating ffmpeg/ffprobe and reporting their versions."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache

from eamm.errors import MissingToolError

INSTALL_HINT = (
    "install it with `sudo apt-get install ffmpeg` (Debian/Ubuntu) or `brew install ffmpeg`"
)


def require_tool(name: str) -> str:
    """Absolute path of ``name`` on PATH, or a MissingToolError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(name, INSTALL_HINT)
    return path


@cache
def _version_line(path: str) -> str:
    out = subprocess.run([path, "-version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0] if out else ""


def tool_version(name: str) -> str:
    """The version token of ffmpeg/ffprobe, e.g. ``5.1.8-0+deb12u1``."""
    line = _version_line(require_tool(name))
    parts = line.split()
    return parts[2] if len(parts) > 2 and parts[1] == "version" else line
