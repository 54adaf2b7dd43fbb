"""One batch of clips, processed in a worker: the unit a preprocessing task runs."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from eamm.config import PreprocessParams
from eamm.datasets.base import ClipEntry
from eamm.face.landmarks import FaceModels, LandmarkBackend
from eamm.preprocess.dataset import Journal, process_entry
from eamm.preprocess.errors import RunFaults, run_fault

log = logging.getLogger(__name__)

# Output folders whose run is leaving (cancelled, stopped): the batches run for them stop after
# their current clip, so the run releases its folder lock only when no clip of it is still
# being written (threads ran on for a whole batch after a cancel). Said in this process's set
# (the thread runner) and by a marker file in the folder, which a process or Dask worker sees
# as the clips it writes there (their batches ran to their end while the flow waited).
_stopping: set[Path] = set()
_stopping_guard = threading.Lock()
STOP_MARKER = ".stopping"


def request_stop(out_root: Path, stop: bool = True) -> None:
    """Ask (``stop``) or stop asking the batches of ``out_root`` to stop. A run clears it as
    it starts, under the folder's lock (a killed run's marker would stop the next one)."""
    folder = Path(out_root).resolve()
    with _stopping_guard:
        (_stopping.add if stop else _stopping.discard)(folder)
    marker = folder / STOP_MARKER
    with contextlib.suppress(OSError):  # a read-only or gone folder: the set still says it
        if stop:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)


def stop_requested(out_root: Path) -> bool:
    folder = Path(out_root).resolve()
    return folder in _stopping or (folder / STOP_MARKER).exists()


def process_batch(
    entries: list[ClipEntry],
    raw_root: Path,
    out_root: Path,
    params: PreprocessParams,
    param_fp: str,
    previous: dict[str, dict],
    models: FaceModels,
    backend: LandmarkBackend,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> list[tuple[dict, bool]]:
    """Process (or reuse) each clip; every finished clip is journaled before the next starts.

    A run fault (disk full, I/O error, memory) skips to the next clip and, at the end, raises
    RunFaults carrying the finished clips' results, so a retry redoes only what the run lost.
    Where the run is leaving (``request_stop``), returns after the current clip.
    """
    journal = Journal(Path(out_root))
    results = []
    faults: dict[str, str] = {}
    for entry in entries:
        if stop_requested(out_root):  # the run is leaving: its finished clips are journaled
            break
        try:
            row, reused = process_entry(
                entry,
                Path(raw_root),
                Path(out_root),
                params,
                param_fp,
                previous.get(entry.clip_id),
                models,
                backend,
            )
            if not reused:
                journal.append(row)
        except Exception as err:
            reason = run_fault(err)
            if reason is None:
                raise
            logger.warning("%s not processed (run fault): %s", entry.clip_id, err)
            faults[entry.clip_id] = reason
            continue
        if row["status"] == "failed":
            logger.warning("%s failed: %s", entry.clip_id, row["error_message"])
        results.append((row, reused))
    if faults:
        raise RunFaults(faults, results)
    return results
