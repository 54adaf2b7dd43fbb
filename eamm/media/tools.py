"""Locating ffmpeg/ffprobe and reporting their versions."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from eamm.errors import EammError, MissingToolError

INSTALL_HINT = (
    "install it with `sudo apt-get install ffmpeg` (Debian/Ubuntu) or `brew install ffmpeg`"
)


def require_tool(name: str) -> str:
    """Absolute path of ``name`` on PATH, or a MissingToolError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(name, INSTALL_HINT)
    return path


def file_argument(path: str | Path) -> str:
    """``path`` as ffmpeg/ffprobe read it as a file: a relative name starting with ``-`` was
    taken for an option ("Missing argument for option 'a.m4a'"), one holding ``:`` for a
    protocol."""
    return "file:" + os.path.abspath(path)


@cache
def _version_line(path: str) -> str:
    """The first line of ``path -version``; an install that does not run is named (a broken
    ffmpeg crashed ``eamm doctor`` with a CalledProcessError, a hanging one hung it)."""
    try:
        done = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise EammError(f"{path}: `-version` did not answer in 30 s (a broken install?)") from None
    except OSError as err:
        raise EammError(f"{path}: does not run ({err.strerror or err})") from None
    if done.returncode != 0:
        raise EammError(f"{path}: `-version` exited {done.returncode} (a broken install?)")
    return done.stdout.splitlines()[0] if done.stdout else ""


def tool_version(name: str) -> str:
    """The version token of ffmpeg/ffprobe, e.g. ``5.1.8-0+deb12u1``."""
    line = _version_line(require_tool(name))
    parts = line.split()
    return parts[2] if len(parts) > 2 and parts[1] == "version" else line
