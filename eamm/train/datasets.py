"""Torch datasets of the training stages (reference 3.5), reading the per-clip data contract.

Every item is drawn from a seed the sampler hands over with the clip index, so a given
(seed, step) always gives the same batch: resuming a run replays exactly the same data.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from eamm.augment import (
    color_jitter,
    emotion_augment,
    random_blur,
    random_flip,
    random_stretch,
)
from eamm.clips import Clip, fill_missing_rows, window_start
from eamm.smoothing import one_euro
from eamm.tensors import to_tensor


def neutral_clips(clips: list[Clip]) -> dict[str | None, list[Clip]]:
    """Each speaker's neutral clips: where EAMM takes a MEAD sample's identity frame from."""
    found: dict[str | None, list[Clip]] = defaultdict(list)
    for clip in clips:
        if clip.emotion == "neutral":
            found[clip.speaker].append(clip)
    return found


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (clip index, item seed) for steps start..steps-1, a pure function of
    (seed, step): no epoch state to restore on resume. Under DDP the global batch is drawn the
    same way and split across processes, like a DistributedSampler."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        steps: int,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        if num_items == 0:
            raise ValueError("no training clips: check the manifest, split and clip length")
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes")
        self.num_items, self.batch_size = num_items, batch_size
        self.steps, self.seed, self.start = steps, seed, start
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self):
        for step in range(self.start, self.steps):
            rng = np.random.default_rng([self.seed, step])
            picks = rng.integers(0, self.num_items, self.batch_size)
            seeds = rng.integers(0, 2**31 - 1, self.batch_size)
            items = [(int(i), int(s)) for i, s in zip(picks, seeds, strict=True)]
            yield items[self.rank :: self.world]  # each process its share of the global batch


class SeededClips(Dataset):
    """Items are (clip index, seed) from ``StepBatchSampler``; each draws from its own RNG.

    With a frame cache (``cache_frames``) each process decodes a clip once, whole, at the
    training size and keeps it while the budget lasts: a small dataset (the demo's) then
    costs no decoding after the first epoch. The frames are the same either way."""

    def __init__(self, clips: list[Clip], image_size: int) -> None:
        self.clips, self.size = clips, image_size
        self.cache_budget = 0
        self._cache: dict[str, np.ndarray] = {}
        self._cached_bytes = 0

    def cache_frames(self, max_bytes: int) -> None:
        """Keep decoded clips in memory up to ``max_bytes`` per process (0: no cache)."""
        self.cache_budget = max_bytes

    def _frames(self, clip: Clip, picks: list[int]) -> np.ndarray:
        cached = self._cache.get(clip.clip_id)
        if cached is None and self.cache_budget:
            size = clip.num_frames * self.size * self.size * 3
            if self._cached_bytes + size <= self.cache_budget:
                cached = clip.frames(list(range(clip.num_frames)), self.size)
                self._cache[clip.clip_id] = cached
                self._cached_bytes += cached.nbytes
        return cached[picks] if cached is not None else clip.frames(picks, self.size)

    def __len__(self) -> int:
        return len(self.clips)

    def _draw(self, item: tuple[int, int]) -> tuple[Clip, np.random.Generator]:
        index, seed = item
        return self.clips[index], np.random.default_rng(seed)


class FommPairs(SeededClips):
    """FOMM base (its ``FramesDataset`` + vox-256 augmentation): two frames of one clip drawn
    with replacement, in time order (source, driving); with ``time_flip`` their order is
    swapped, with ``hflip`` both are mirrored (each with p 0.5), then one colour jitter for
    the pair. With ``mouth`` the item also holds ``mouth``, the driving frame's mouth box
    (its landmarks 48-67 widened by ``MOUTH_PAD`` of the mouth's width) as a (1, H, W) mask,
    flipped with the frames; the random draws are the same with it or without.

    ``neutral_source`` (ours; FOMM: 0) is the probability that a MEAD pair's source frame is
    instead a frame of a neutral clip of the same speaker (where EAMM takes the identity frame
    from in stages 2-3 and at inference): within one clip an expression hardly changes, so
    pairs from one clip never ask the keypoints to carry one.

    With ``landmarks`` the item also holds ``landmarks``, (2, 10, 2): the 68-point landmarks
    ``LANDMARK_KEYPOINTS`` of the source and driving frames in keypoint coordinates ([-1, 1], x
    then y; NaN where no face was found), flipped and reordered with the frames, so keypoint k
    stays on the image side of landmark k (``eamm.train.stages.landmark_l1``)."""

    MOUTH_PAD = 0.25
    # Mouth corners, outer lip centres, chin, nose tip, brow middles, inner brow ends: the parts
    # the sample's speech and expressions move. Mirrored, each pair trades places.
    LANDMARK_KEYPOINTS = (48, 54, 51, 57, 8, 30, 19, 24, 21, 22)
    MIRRORED = (1, 0, 2, 3, 4, 5, 7, 6, 9, 8)

    def __init__(
        self,
        clips: list[Clip],
        image_size: int,
        hflip: bool = True,
        time_flip: bool = True,
        jitter: float = 0.1,
        mouth: bool = False,
        neutral_source: float = 0.0,
        landmarks: bool = False,
    ) -> None:
        super().__init__(clips, image_size)
        self.hflip, self.time_flip, self.jitter, self.mouth = hflip, time_flip, jitter, mouth
        self.neutral_source, self.landmarks = neutral_source, landmarks
        self.neutral = neutral_clips(clips) if neutral_source else {}
        self._mouths: dict[str, np.ndarray] = {}
        self._points: dict[str, np.ndarray] = {}

    def _keypoint_targets(self, clip: Clip) -> np.ndarray:
        """(T, 10, 2) ``LANDMARK_KEYPOINTS`` in keypoint coordinates (NaN: no face found)."""
        points = self._points.get(clip.clip_id)
        if points is None:
            stored = clip.frame_width()
            picked = clip.array("landmarks.npy")[:, list(self.LANDMARK_KEYPOINTS)]
            points = (2 * picked / (stored - 1) - 1).astype(np.float32)
            self._points[clip.clip_id] = points
        return points

    def _mouth_boxes(self, clip: Clip) -> np.ndarray:
        """(T, 4) mouth boxes x0, y0, x1, y1 at the training size (NaN: no face found)."""
        boxes = self._mouths.get(clip.clip_id)
        if boxes is None:
            stored = clip.frame_width()
            points = clip.array("landmarks.npy")[:, 48:68] * (self.size / stored)
            low, high = points.min(axis=1), points.max(axis=1)
            pad = self.MOUTH_PAD * (high[:, :1] - low[:, :1])
            boxes = np.concatenate([low - pad, high + pad], axis=1)
            self._mouths[clip.clip_id] = boxes
        return boxes

    def _mouth_masks(self, shown: list[tuple[Clip, int]]) -> np.ndarray:
        """One mask per (clip, frame): each frame's own mouth box (a neutral source frame's
        from its own clip, so a time flip that makes it the driving frame keeps its mask)."""
        masks = np.zeros((len(shown), self.size, self.size, 1), np.uint8)
        boxes = [self._mouth_boxes(clip)[index] for clip, index in shown]
        for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
            if np.isfinite(x0):
                lo_x, lo_y = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
                mask[lo_y : int(np.ceil(y1)) + 1, lo_x : int(np.ceil(x1)) + 1] = 255
        return masks

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        clip, rng = self._draw(item)
        picks = sorted(int(v) for v in rng.choice(clip.num_frames, 2, replace=True))
        frames = self._frames(clip, picks)
        shown = [(clip, picks[0]), (clip, picks[1])]  # the (clip, frame) of source and driving
        pool = [c for c in self.neutral.get(clip.speaker, []) if c is not clip]
        if pool and rng.random() < self.neutral_source:  # no draw at 0: FOMM's pairs unchanged
            source = pool[int(rng.integers(len(pool)))]
            shown[0] = (source, int(rng.integers(source.num_frames)))
            frames = np.stack([self._frames(source, [shown[0][1]])[0], frames[1]])
        if self.mouth:  # a fourth channel, so the flips move it with the frames
            frames = np.concatenate([frames, self._mouth_masks(shown)], axis=-1)
        points = (
            np.stack([self._keypoint_targets(c)[i] for c, i in shown]) if self.landmarks else None
        )
        # FOMM's time flip and mirror, p 0.5 each (one draw each when on), points with frames
        if self.time_flip and rng.random() < 0.5:
            frames = frames[::-1]
            points = None if points is None else points[::-1]
        if self.hflip and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
            if points is not None:
                points = points[:, list(self.MIRRORED)] * np.float32([-1, 1])
        tensors = to_tensor(color_jitter(np.ascontiguousarray(frames[..., :3]), rng, self.jitter))
        item = {"source": tensors[0], "driving": tensors[1]}
        if self.mouth:
            item["mouth"] = to_tensor(np.ascontiguousarray(frames[1:, ..., 3:]))[0]
        if points is not None:
            item["landmarks"] = torch.from_numpy(np.ascontiguousarray(points))
        return item


class AudioWindows(SeededClips):
    """Stages 1-2: identity frame r, driving frames r+1..r+T, their MFCC windows (c0 dropped)
    and pose rows (first 6 columns); colour jitter on the driving frames only."""

    def __init__(
        self,
        clips: list[Clip],
        image_size: int,
        clip_len: int = 16,
        jitter: float = 0.1,
        smooth_pose: bool = False,
    ) -> None:
        super().__init__(clips, image_size)
        self.clip_len, self.jitter, self.smooth_pose = clip_len, jitter, smooth_pose

    def _window(self, clip: Clip, rng: np.random.Generator) -> tuple[int, dict]:
        r = window_start(clip.num_frames, self.clip_len, rng)
        span = slice(r + 1, r + 1 + self.clip_len)
        mfcc = clip.array("mfcc.npy", mmap=True)[span, :, 1:]
        pose = fill_missing_rows(clip.array("pose.npy"))
        if self.smooth_pose:
            pose = one_euro(pose, mincutoff=0.01, beta=0.7)
        return r, {
            "driving_audio": torch.from_numpy(np.array(mfcc, dtype=np.float32)),
            "driving_pose": torch.from_numpy(pose[span, :6].astype(np.float32)),
        }

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        clip, rng = self._draw(item)
        r, sample = self._window(clip, rng)
        frames = self._frames(clip, list(range(r, r + 1 + self.clip_len)))
        driving = color_jitter(frames[1:], rng, self.jitter)
        sample["example_image"] = to_tensor(frames[0])
        sample["driving"] = to_tensor(driving)
        return sample


class EmotionWindows(AudioWindows):
    """Stage 3 on MEAD: clean driving frames (teacher input), their augmented copy (emotion
    branch input), the emotion label, and an identity frame from a neutral clip of the same
    speaker (the clip itself when the speaker has no neutral clip). Poses One-Euro smoothed."""

    def __init__(
        self, clips: list[Clip], image_size: int, clip_len: int = 16, rotation: float = 30.0
    ) -> None:
        super().__init__(clips, image_size, clip_len, jitter=0.0, smooth_pose=True)
        self.rotation = rotation
        self.neutral = neutral_clips(clips)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        clip, rng = self._draw(item)
        r, sample = self._window(clip, rng)
        frames = self._frames(clip, list(range(r + 1, r + 1 + self.clip_len)))
        pool = self.neutral.get(clip.speaker) or [clip]
        source = pool[int(rng.integers(len(pool)))]
        identity = self._frames(source, [int(rng.integers(source.num_frames))])[0]
        sample["example_image"] = to_tensor(identity)
        sample["driving"] = to_tensor(frames)
        sample["transformed_driving"] = to_tensor(emotion_augment(frames, rng, self.rotation))
        sample["emotion"] = torch.tensor(clip.emotion_index, dtype=torch.long)
        return sample


class EmotionFrames(SeededClips):
    """Emotion classifier: ``clip_len`` random frames of a MEAD clip (flip, stretch, blur, colour
    jitter) and the clip's emotion label. The stretch keeps the judge from learning the
    training speakers' face shapes instead of their expressions; the blur, from reading
    expressions only in sharp frames."""

    def __init__(
        self,
        clips: list[Clip],
        image_size: int,
        clip_len: int = 4,
        jitter: float = 0.1,
        stretch: float = 0.0,
        blur: float = 0.0,
    ) -> None:
        super().__init__(clips, image_size)
        self.clip_len, self.jitter, self.stretch, self.blur = clip_len, jitter, stretch, blur

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        clip, rng = self._draw(item)
        picks = rng.choice(clip.num_frames, self.clip_len, replace=clip.num_frames < self.clip_len)
        frames = self._frames(clip, sorted(int(i) for i in picks))
        frames = random_stretch(random_flip(frames, rng), rng, self.stretch)
        frames = random_blur(frames, rng, self.blur)
        frames = color_jitter(frames, rng, self.jitter)
        return {
            "frames": to_tensor(frames),
            "emotion": torch.tensor(clip.emotion_index, dtype=torch.long),
        }


class SyncWindows(SeededClips):
    """Sync expert: ``window`` consecutive crops of an LRW clip and the MFCC window (c0
    dropped) of their middle frame (label 1), or of the middle frame of a window at least
    ``min_offset`` frames away in the same clip (label 0), each with probability 1/2."""

    def __init__(
        self, clips: list[Clip], image_size: int, window: int = 5, min_offset: int = 3
    ) -> None:
        super().__init__(clips, image_size)
        self.window, self.min_offset = window, min_offset

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        clip, rng = self._draw(item)
        mfcc = clip.array("mfcc.npy", mmap=True)
        starts = min(clip.num_frames, mfcc.shape[0]) - self.window + 1
        start = int(rng.integers(starts))
        far = [s for s in range(starts) if abs(s - start) >= self.min_offset]
        positive = rng.random() < 0.5 or not far
        audio_start = start if positive else int(far[int(rng.integers(len(far)))])
        frames = self._frames(clip, list(range(start, start + self.window)))
        audio = np.array(mfcc[audio_start + self.window // 2, :, 1:], dtype=np.float32)
        return {
            "frames": to_tensor(frames),
            "audio": torch.from_numpy(audio),
            "label": torch.tensor(float(positive)),
        }
