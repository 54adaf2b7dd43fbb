"""Files replaced whole: written beside their final name, flushed to disk, then renamed.

Why: a kill, a full disk or an error mid-write must leave the previous file (or none), never a
half-written report, summary or table that a later stage or a reader would trust.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_beside(path: Path, suffix: str = ".partial") -> Path:
    """A new, empty file of its own beside ``path`` (``.<name>.*<suffix>``, mode 0644 as the
    output would have; mkstemp makes 0600): two writers of one output never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o644)
    return Path(name)


@contextmanager
def replacing(path: str | Path) -> Iterator[str]:
    """A temporary file beside ``path`` (``.<name>.*.partial``) to write; it replaces ``path``
    when the block ends without error and is removed otherwise. Writers that infer a format
    from the name must be told it (the temporary name ends in ``.partial``)."""
    path = Path(path)
    tmp = str(temp_beside(path))
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """``path`` holds ``data``, or what it held before if the write failed."""
    with replacing(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holds ``text`` (UTF-8), or what it held before if the write failed."""
    return write_bytes(path, text.encode())
