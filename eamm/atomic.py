"""Files replaced whole: written beside their final name, flushed to disk, then renamed.

Why: a kill, a full disk or an error mid-write must leave the previous file (or none), never a
half-written report, summary or table that a later stage or a reader would trust.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from eamm.errors import EammError

K = TypeVar("K")


def _read_umask() -> int:
    """The umask, from Linux's /proc where it says (setting it to read it, elsewhere, changes
    it for every thread for that instant)."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(ln for ln in status.splitlines() if ln.startswith("Umask:")).split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


UMASK = _read_umask()


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the user's umask (0644 under 022, 0600
    under 077): what staged outputs get, as mkstemp makes them 0600 whatever the umask."""
    return 0o666 & ~UMASK


def folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder under the user's umask (mkdtemp makes 0700)."""
    return 0o777 & ~UMASK


def temp_beside(path: Path, suffix: str = ".partial") -> Path:
    """A new, empty file of its own beside ``path`` (``.<name>.*<suffix>``, with the mode the
    output would have, ``file_mode``): two writers of one output never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, file_mode())
    return Path(name)


def leftovers(path: Path) -> list[Path]:
    """The temporary files ``temp_beside`` made for ``path`` that no one removed (their writer
    was killed), and those made beside them in turn (writers that stage their own, as the
    video encoders do inside ``replacing_all``)."""
    return [
        found
        for pattern in (f".{path.name}.*.partial*", f"..{path.name}.*.partial*")
        for found in path.parent.glob(pattern)
    ]


def remove_leftovers(paths: Iterable[Path]) -> None:
    """Remove the staged files (or folders) a killed writer left beside any of ``paths`` (call
    it holding the lock of their folder, so no living writer's files go)."""
    for path in paths:
        for found in leftovers(Path(path)):
            if found.is_dir() and not found.is_symlink():
                shutil.rmtree(found, ignore_errors=True)
            else:
                found.unlink(missing_ok=True)


def check_replaceable(
    out: Path, keep: Collection[str], folder: str, outputs: str, earlier: str
) -> None:
    """Refuse, before any work, to replace ``out`` whole when it is a file or a folder holding
    anything but names in ``keep`` (an earlier run's outputs), so a user's folder named by
    mistake is never deleted. The phrases name the ``folder`` written, its ``outputs`` and
    the ``earlier`` run's folder to name instead."""
    if out.exists() and not out.is_dir():  # never swap a user's file for the output folder
        raise EammError(f"{out}: is a file, not {folder}")
    if not out.is_dir():
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in keep)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise EammError(
            f"{out}: holds files that are not {outputs} ({shown}); the run replaces the whole "
            f"folder, so name a new folder or {earlier}"
        )


def real_folder(out: Path) -> Path:
    """Where an output folder given through a symbolic link really is: the folder is staged
    and swapped there, and the link stays (swapping the link itself failed with "Is a
    directory" and left an empty ``.<name>.*.old`` folder each time)."""
    return out.resolve() if out.is_symlink() else out


def replace_folder(staged: Path, out: Path) -> None:
    """Swap a finished folder into place; an older ``out`` is removed only afterwards, so a
    kill at any moment leaves the old folder or the new one at ``out``."""
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    if out.exists():
        os.replace(out, old)  # onto the empty folder mkdtemp made
    os.replace(staged, out)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def replacing(path: str | Path) -> Iterator[str]:
    """A temporary file beside ``path`` (``.<name>.*.partial``) to write; it replaces ``path``
    when the block ends without error and is removed otherwise. Writers that infer a format
    from the name must be told it (the temporary name ends in ``.partial``)."""
    with replacing_all({0: Path(path)}, keep_suffix=False) as temps:
        yield str(temps[0])


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the block, then handled as they would have been: a
    Ctrl-C between two renames of a set left the new video beside the old comparison. Their
    Python handlers are swapped (a thread's signal mask does not hold back a signal another
    thread of the process receives); only the main thread can, and only it is interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held: dict[int, object] = {}
    holding = [True]

    def hold(signum: int, _frame) -> None:
        if holding[0]:
            pending.append(signum)
        else:  # landed while the handlers were being put back: as it would have been
            _deliver(signum, held[signum])

    try:
        for signum in HELD_SIGNALS:
            held[signum] = signal.signal(signum, hold)
        yield
    finally:
        holding[0] = False
        for signum, handler in held.items():  # None: not set from Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in pending:
            _deliver(signum, held[signum])


def _deliver(signum: int, handler) -> None:
    """Handle ``signum`` as ``handler`` (what ``signal.signal`` returned) would have."""
    if callable(handler):
        handler(signum, None)
    elif handler in (signal.SIG_DFL, None):
        os.kill(os.getpid(), signum)


@contextmanager
def replacing_all(paths: Mapping[K, Path], keep_suffix: bool = True) -> Iterator[dict[K, Path]]:
    """Temporary files beside each of ``paths`` that replace them together when the block ends
    without error (all are removed otherwise): outputs that belong together, such as a video
    and its side-by-side comparison, are all from one run. ``keep_suffix``: the temporary names
    end in the output's extension (``.partial.mp4``), for writers that pick a format by it."""
    temps: dict[K, Path] = {}
    try:
        for key, path in paths.items():
            temps[key] = temp_beside(path, f".partial{path.suffix if keep_suffix else ''}")
        yield temps
        for tmp in temps.values():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        with signals_held():
            for key, tmp in temps.items():
                os.replace(tmp, paths[key])
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """``path`` holds ``data``, or what it held before if the write failed."""
    with replacing(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holds ``text`` (UTF-8), or what it held before if the write failed."""
    return write_bytes(path, text.encode())
