"""Reading the per-clip data contract for training and evaluation: only the frames and bytes a
sample needs."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np
import soundfile as sf

from eamm.config import MEAD_EMOTIONS
from eamm.errors import EammError
from eamm.manifest import (
    OUTPUT_FILES,
    listed_twice,
    members,
    read_rows,
    recorded_members_problem,
)
from eamm.shards import Member, digest_of, load_npy, npy_memmap

# Shard members (shard, offset) whose bytes matched their manifest hash in this process: each is
# checked on its first read only, at one hash of bytes the read brings in anyway.
_VERIFIED: set[tuple[str, int]] = set()


class DamagedOutputError(EammError):
    """A clip's output in its shard no longer has the bytes its manifest row recorded."""


@dataclass(frozen=True)
class Clip:
    """One ok manifest row: where each output file lives (a shard member, or a file of an
    unpacked clip folder) and the facts samplers need."""

    clip_id: str
    files: Mapping[str, Member | Path]
    num_frames: int
    speaker: str | None
    emotion: str | None
    dataset: str
    hashes: Mapping[str, str] | None = None  # output name -> content hash (manifest rows)

    @classmethod
    def from_folder(
        cls,
        folder: Path,
        num_frames: int,
        speaker: str | None = None,
        emotion: str | None = None,
        dataset: str = "mead",
        clip_id: str | None = None,
    ) -> Clip:
        """A clip unpacked into a folder (``tar xf`` of a shard, or built by hand)."""
        files = {name: folder / name for name in OUTPUT_FILES}
        return cls(clip_id or folder.name, files, num_frames, speaker, emotion, dataset)

    @property
    def emotion_index(self) -> int:
        """EAMM's label: index in the alphabetical MEAD emotion list (reference 1.6)."""
        return MEAD_EMOTIONS.index(self.emotion or "neutral")

    def _verify(self, name: str, data: bytes | None = None) -> None:
        """Refuse a shard member whose bytes differ from its recorded hash (first read only):
        H.264 decodes damaged bytes without a word, so training would learn from them."""
        where, expected = self.files[name], (self.hashes or {}).get(name)
        if not isinstance(where, Member) or not expected:
            return
        key = (str(where.shard), where.offset)
        if key in _VERIFIED:
            return
        if (digest_of(data) if data is not None else where.digest()) != expected:
            raise DamagedOutputError(
                f"{self.clip_id}: {name} damaged (its bytes differ from the recorded hash) in "
                f"{where.shard}; `eamm manifest validate` lists every such clip and a "
                "preprocessing re-run redoes them"
            )
        _VERIFIED.add(key)

    def read(self, name: str) -> bytes:
        """An output's bytes, checked against the manifest's hash on first read."""
        where = self.files[name]
        if not isinstance(where, Member):
            return where.read_bytes()
        data = where.read()
        self._verify(name, data)
        return data

    def open(self, name: str) -> BinaryIO:
        where = self.files[name]
        return io.BytesIO(self.read(name)) if isinstance(where, Member) else where.open("rb")

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        """A ``.npy`` output; ``mmap`` maps it instead of reading it (slices read only their
        pages; the member is hashed once on first use)."""
        where = self.files[name]
        if isinstance(where, Member):
            if mmap:
                self._verify(name)
                return npy_memmap(where)
            return load_npy(self.read(name))
        return np.load(where, mmap_mode="r" if mmap else None)

    def frames(self, indices: list[int], size: int | None = None) -> np.ndarray:
        with self.open("frames.mp4") as handle:
            return read_frames(handle, indices, size, label=f"{self.clip_id}/frames.mp4")

    def frame_width(self) -> int:
        """The stored frames' width in pixels: the scale of ``landmarks.npy``."""
        with self.open("frames.mp4") as handle, av.open(handle) as container:
            return container.streams.video[0].codec_context.width

    def audio(self) -> np.ndarray:
        """The clip's 16 kHz mono soundtrack as float32 in [-1, 1]."""
        with self.open("audio.wav") as handle:
            samples, _ = sf.read(handle, dtype="float32")
        return samples


def load_clips(manifest: str | Path, splits: tuple[str, ...], min_frames: int = 1) -> list[Clip]:
    """Ok clips of the given splits with at least ``min_frames`` frames, sorted by id."""
    manifest = Path(manifest)
    rows = [
        r
        for r in read_rows(manifest)
        if r["status"] == "ok" and r["split"] in splits and (r["n_frames"] or 0) >= min_frames
    ]
    _check_rows(manifest, rows)
    clips = [
        Clip(
            clip_id=r["clip_id"],
            files=members(r, manifest.parent),
            num_frames=int(r["n_frames"]),
            speaker=r["speaker"],
            emotion=r["emotion"],
            dataset=r["dataset"],
            hashes=dict(zip(r["output_files"], r["member_hashes"], strict=True))
            if r.get("member_hashes")
            else None,
        )
        for r in rows
    ]
    _check_shards(manifest, clips)
    return sorted(clips, key=lambda c: c.clip_id)


def _check_rows(manifest: Path, rows: list[dict]) -> None:
    """One line for rows that would be read twice or from the wrong place: a clip listed
    twice (scored or trained on twice), member lists of unequal lengths, a shard outside the
    manifest's folder (``eamm manifest validate`` lists every such row)."""
    problems = listed_twice(rows)
    problems += [f"{r['clip_id']}: {p}" for r in rows if (p := recorded_members_problem(r))]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EammError(
            f"{manifest}: {problems[0]}{more}; `eamm manifest validate {manifest.parent}` lists "
            "them: preprocess again, or restore the manifest"
        )


def _check_shards(manifest: Path, clips: list[Clip]) -> None:
    """One line for shards the rows name but the disk lacks (not a raw error mid-training)."""
    shards: dict[Path, int] = {}
    for clip in clips:
        for where in clip.files.values():
            if isinstance(where, Member):
                shards[where.shard] = shards.get(where.shard, 0) + 1
                break
    missing = sorted(shard for shard in shards if not shard.is_file())
    if missing:
        count = sum(shards[shard] for shard in missing)
        raise EammError(
            f"{manifest}: {len(missing)} shard(s) missing ({', '.join(map(str, missing[:3]))}"
            f"{', ...' if len(missing) > 3 else ''}; {count} clips): re-run preprocessing "
            "to rebuild them (or `dvc pull`)"
        )


def read_frames(
    source: Path | BinaryIO, indices: list[int], size: int | None = None, label: str | None = None
) -> np.ndarray:
    """Frames at ``indices`` (any order, repeats allowed) as uint8 (N, H, W, 3) RGB, from a file
    or an open binary file object (``label`` names it in errors).

    Decodes sequentially up to the last index needed and converts only the wanted frames;
    clips are short, so this beats seeking (H.264 seeks land on key frames anyway).
    """
    wanted = sorted(set(indices))
    last = wanted[-1]
    found: dict[int, np.ndarray] = {}
    with av.open(str(source) if isinstance(source, Path) else source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        for k, frame in enumerate(container.decode(stream)):
            if k in wanted:
                image = frame.to_ndarray(format="rgb24")
                if size is not None and image.shape[0] != size:
                    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                found[k] = image
            if k >= last:
                break
    if len(found) != len(wanted):
        raise ValueError(f"{label or source}: has fewer than {last + 1} frames")
    return np.stack([found[i] for i in indices])


def fill_missing_rows(array: np.ndarray) -> np.ndarray:
    """Replace NaN rows (frames without a face) by the nearest valid row in time."""
    flat = array.reshape(len(array), -1)
    valid = np.isfinite(flat).all(axis=1)
    if valid.all() or not valid.any():
        return array
    idx = np.where(valid)[0]
    nearest = idx[np.clip(np.searchsorted(idx, np.arange(len(array))), 0, len(idx) - 1)]
    before = idx[np.clip(np.searchsorted(idx, np.arange(len(array))) - 1, 0, len(idx) - 1)]
    pick = np.where(
        np.abs(before - np.arange(len(array))) <= np.abs(nearest - np.arange(len(array))),
        before,
        nearest,
    )
    return array[pick]


def interpolate_missing_rows(rows: np.ndarray) -> np.ndarray:
    """(T, C) rows with NaN rows (frames without a face) linearly interpolated between the
    valid rows around them, held at the ends: a head pose given to ``eamm generate`` moves on
    through a gap instead of jumping at its middle. Needs at least one valid row."""
    valid = np.isfinite(rows).all(axis=1)
    if valid.all():
        return rows
    t, known = np.arange(len(rows)), np.flatnonzero(valid)
    columns = [np.interp(t, known, rows[known, c]) for c in range(rows.shape[1])]
    return np.stack(columns, axis=1).astype(rows.dtype)


def window_start(num_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """First driving frame minus one, as EAMM draws it (reference 3.5).

    LRW-length clips (29 frames): r uniform in 3..7; otherwise r = 0 when the clip barely
    fits (EAMM: 16 < windows < 24), else uniform in [3, T - clip_len - 5]. EAMM counts T + 1
    MFCC windows, so its upper bound is one frame later (T - 20 at 16 frames); ours is kept
    (the demo's windows were drawn with it).
    """
    if num_frames - clip_len - 1 < 0:
        raise ValueError(f"clip of {num_frames} frames is shorter than {clip_len + 1}")
    if num_frames == 29 and clip_len == 16:
        return int(rng.integers(3, 8))
    lo, hi = 3, num_frames - clip_len - 5
    if hi < lo:  # it drew r anywhere in the clip, unlike EAMM
        return 0
    return int(rng.integers(lo, hi + 1))
