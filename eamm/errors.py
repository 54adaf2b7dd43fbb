"""Typed errors: each names the file or tool at fault and the reason, in one line."""

from __future__ import annotations

from pathlib import Path


class EammError(Exception):
    """Base class; ``str(err)`` is the one-line message shown to users."""


class MissingToolError(EammError):
    """An external program (ffmpeg, ffprobe) is not installed."""

    def __init__(self, tool: str, hint: str) -> None:
        super().__init__(f"{tool} not found on PATH: {hint}")
        self.tool = tool


class MediaError(EammError):
    """A media file cannot be read or written."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class MissingFileError(MediaError):
    """A media file named (by an index, an option) is not there: gone since it was indexed,
    not unreadable."""

    code = "missing_file"


class EncoderError(MediaError):
    """An encoder (the ffmpeg subprocess, or PyAV's libx264/AAC in process) failed or died
    while writing our own frames or samples: a fault of the tool or the run (a broken
    install, killed, out of memory), not of a clip's media."""
