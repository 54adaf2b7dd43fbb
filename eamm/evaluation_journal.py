"""The finished clips of an evaluation, kept so that a killed run (kill -9, Ctrl-C, a lost
machine) resumes at the clip it was on: at the reference size a clip costs minutes, and the
report is written only at the end.

One ``<k>.npz`` per finished clip in ``<out>/.journal/<dataset>/``, each written whole
(beside, then renamed): the clip's score rows, the report's stills it added and, with FID, its
Inception features (16 KB a frame and variant). ``key.json`` holds a digest of everything the
scores depend on (the clips and their manifest, the evaluate and generate params, every
checkpoint's and weight file's bytes, and what rounds the last digits: torch's version, the
device, the CPU's thread count and instruction set); a run whose digest differs starts afresh,
so a run resumed elsewhere never mixes two machines' rounding. The flow removes the journal
once the report is written. A clip scores the same whatever ran before it
(its seeds are its own, the landmarker's tracking restarts per clip), so a resumed run writes
the straight run's report, byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from eamm.atomic import replacing, write_text
from eamm.errors import EammError

JOURNAL_DIR = ".journal"
KEY_FILE = "key.json"


@dataclass
class ClipRecord:
    """What one finished clip adds to the run: its score rows (``ClipScore`` fields), the stills
    it was first to give its group (``group``: the emotion, or the dataset), and its FID
    features per variant."""

    clip_id: str
    scores: list[dict]
    group: str
    stills: dict[str, np.ndarray] = field(default_factory=dict)
    fid: dict[str, np.ndarray] = field(default_factory=dict)


def numerics(device: torch.device) -> dict[str, str | int]:
    """What rounds a score's last digits besides the inputs: torch's version, the device, and
    on the CPU the thread count and the instruction set torch dispatches to."""
    found: dict[str, str | int] = {"torch": torch.__version__, "device": str(device)}
    if device.type == "cpu":
        found["threads"] = torch.get_num_threads()
        found["cpu"] = torch.backends.cpu.get_cpu_capability()
    elif device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


def journal_folder(out_dir: str | Path, dataset: str) -> Path:
    return Path(out_dir) / JOURNAL_DIR / dataset


class EvaluationJournal:
    """The records of one dataset's clips under one run key (a dict of JSON values)."""

    def __init__(self, folder: str | Path, key: dict) -> None:
        self.folder = Path(folder)
        self.digest = hashlib.blake2b(
            json.dumps(key, sort_keys=True).encode(), digest_size=16
        ).hexdigest()
        if self._stored_digest() != self.digest:  # another run's clips, or none
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            write_text(self.folder / KEY_FILE, json.dumps({"digest": self.digest, **key}))
        for staged in self.folder.glob(".*.partial*"):  # a killed run's record, half written
            staged.unlink(missing_ok=True)

    def _stored_digest(self) -> str | None:
        try:
            return json.loads((self.folder / KEY_FILE).read_text()).get("digest")
        except (OSError, ValueError, AttributeError):
            return None

    def _path(self, k: int) -> Path:
        return self.folder / f"{k:06d}.npz"

    def load(self, k: int, clip_id: str) -> ClipRecord | None:
        """Clip ``k``'s record, or None where there is none or it does not read back whole
        (then the clip is scored again)."""
        path = self._path(k)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                meta = json.loads(str(stored["meta"]))
                if meta["clip_id"] != clip_id:
                    return None
                arrays = {name: stored[name] for name in stored.files if name != "meta"}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None
        return ClipRecord(
            clip_id,
            meta["scores"],
            meta["group"],
            {name[6:]: a for name, a in arrays.items() if name.startswith("still/")},
            {name[4:]: a for name, a in arrays.items() if name.startswith("fid/")},
        )

    def save(self, k: int, record: ClipRecord) -> None:
        meta = {
            "clip_id": record.clip_id,
            "group": record.group,
            "scores": record.scores,
        }
        arrays = {
            "meta": np.array(json.dumps(meta)),  # NaN as JSON's NaN: floats come back exact
            **{f"still/{name}": a for name, a in record.stills.items()},
            **{f"fid/{name}": a for name, a in record.fid.items()},
        }
        # a handle, not the staged name: np.savez would append .npz to it
        try:
            with replacing(self._path(k)) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        except OSError as err:  # a full disk: the file named, the records before it kept
            raise EammError(f"{self._path(k)}: cannot record the clip ({err.strerror})") from err


def remove_journal(out_dir: str | Path) -> None:
    """Drop every dataset's records: the report they were kept for is written."""
    shutil.rmtree(Path(out_dir) / JOURNAL_DIR, ignore_errors=True)
