"""Reading the per-clip data contract for training: only the frames a sample needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from eamm.config import MEAD_EMOTIONS
from eamm.manifest import read_rows


@dataclass(frozen=True)
class Clip:
    """One ok manifest row, with absolute output paths."""

    clip_id: str
    folder: Path
    num_frames: int
    speaker: str | None
    emotion: str | None
    dataset: str

    @property
    def emotion_index(self) -> int:
        """EAMM's label: index in the alphabetical MEAD emotion list (reference 1.6)."""
        return MEAD_EMOTIONS.index(self.emotion or "neutral")


def load_clips(manifest: str | Path, splits: tuple[str, ...], min_frames: int = 1) -> list[Clip]:
    """Ok clips of the given splits with at least ``min_frames`` frames, sorted by id."""
    manifest = Path(manifest)
    clips = [
        Clip(
            clip_id=r["clip_id"],
            folder=manifest.parent / r["output_dir"],
            num_frames=int(r["n_frames"]),
            speaker=r["speaker"],
            emotion=r["emotion"],
            dataset=r["dataset"],
        )
        for r in read_rows(manifest)
        if r["status"] == "ok" and r["split"] in splits and (r["n_frames"] or 0) >= min_frames
    ]
    return sorted(clips, key=lambda c: c.clip_id)


def read_frames(path: Path, indices: list[int], size: int | None = None) -> np.ndarray:
    """Frames at ``indices`` (any order, repeats allowed) as uint8 (N, H, W, 3) RGB.

    Decodes sequentially up to the last index needed and converts only the wanted frames;
    clips are short, so this beats seeking (H.264 seeks land on key frames anyway).
    """
    wanted = sorted(set(indices))
    last = wanted[-1]
    found: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
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
        raise ValueError(f"{path}: has fewer than {last + 1} frames")
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


def window_start(num_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """First driving frame minus one, as EAMM draws it (reference 3.5).

    LRW-length clips (29 frames): r uniform in 3..7; otherwise r = 0 when the clip barely
    fits, else uniform in [3, T - clip_len - 5]; always clamped so r + clip_len < T.
    """
    high = num_frames - clip_len - 1
    if high < 0:
        raise ValueError(f"clip of {num_frames} frames is shorter than {clip_len + 1}")
    if num_frames == 29 and clip_len == 16:
        return int(rng.integers(3, 8))
    lo, hi = 3, num_frames - clip_len - 5
    if hi < lo:
        return int(rng.integers(0, high + 1))
    return int(rng.integers(lo, hi + 1))
