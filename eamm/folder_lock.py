"""One run per output folder (``<out>/.lock``) or output file (``.<name>.lock`` beside it),
held with ``flock`` for the run.

Why: two preprocessing runs on the same folder stage, pack and remove each other's files; two
trainings of a stage overwrite each other's checkpoints and logs (with other params: a mixed
run), two evaluations each other's report. The lock file
names its holder (pid, host, start time) for the message a second run stops with. The kernel
drops the ``flock`` when its process dies, so a file left by a killed run on this host (its
pid gone) locks at once and is taken over. One left by a run on another host is refused: on a
network file system that run may still be alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eamm.errors import EammError

LOCK_NAME = ".lock"


class FolderLockedError(EammError):
    """Another run holds the output folder."""


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}"
    )


def _flock(fd: int, path: Path, busy: str) -> None:
    """Take ``fd``'s flock or raise FolderLockedError, ``busy`` and the holder (``fd`` closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderLockedError(
            f"{busy} ({_describe(_holder(path))}); wait for it or stop it"
        ) from None


def _folder_busy(folder: str | Path, what: str) -> str:
    return f"{Path(folder)}: another {what} is using this folder"


def _output_busy(target: Path, what: str) -> str:
    return f"{target}: another {what} is writing it"


def _output_lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def ensure_free(folder: str | Path, what: str = "preprocessing run") -> None:
    """Raise FolderLockedError now if a live run holds ``folder``: checked before a Prefect
    server starts, so a second run stops at once."""
    _ensure_unlocked(Path(folder) / LOCK_NAME, _folder_busy(folder, what))


def ensure_output_free(target: str | Path, what: str) -> None:
    """The same for one output (``output_lock``)."""
    target = Path(target)
    _ensure_unlocked(_output_lock_path(target), _output_busy(target, what))


def _ensure_unlocked(path: Path, busy: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    _flock(fd, path, busy)  # raises, fd closed, while another run holds it
    os.close(fd)


def _open_locked(path: Path, busy: str) -> int:
    """A descriptor of ``path`` holding its flock; retried when a releasing run removed the
    file between our open and our lock (we would hold a lock on a deleted file)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        _flock(fd, path, busy)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def folder_lock(folder: str | Path, what: str = "preprocessing run") -> Iterator[dict | None]:
    """Hold ``folder``'s lock for the ``with`` block; yields the stale holder it took over
    (None if the folder was free). Raises FolderLockedError naming the running holder."""
    with _held(Path(folder) / LOCK_NAME, _folder_busy(folder, what)) as stale:
        yield stale


@contextmanager
def output_lock(target: str | Path, what: str) -> Iterator[dict | None]:
    """The same for one output file, where runs writing other files share its folder."""
    target = Path(target)
    with _held(_output_lock_path(target), _output_busy(target, what)) as stale:
        yield stale


def _make_folders(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, outermost first. A folder we may
    not write in is one line naming it, not a traceback naming the lock file."""
    made = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EammError(f"{folder}: cannot create the output folder ({err.strerror})") from err
    return made


@contextmanager
def _held(path: Path, busy: str) -> Iterator[dict | None]:
    made = _make_folders(path.parent)
    try:
        fd = _open_locked(path, busy)
    except OSError as err:  # no permission, a read-only file system, /proc
        _remove_empty(made)
        raise EammError(f"{path.parent}: output folder not writable ({err.strerror})") from err
    except BaseException:
        _remove_empty(made)
        raise
    try:
        stale = _holder(path) or None
        host = socket.gethostname()
        if stale and stale.get("host") != host:
            raise FolderLockedError(
                f"{path}: left by a run on another host ({_describe(stale)}); "
                "remove it if that run is gone"
            )
        me = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield stale
        finally:  # an error or Ctrl-C too: the next run need not take a stale file over
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
        _remove_empty(made)  # a run that failed before writing leaves no empty folders


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders ``_make_folders`` made that are still empty, innermost first."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote there) or already gone
            return
