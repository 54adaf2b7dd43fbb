"""The evaluation protocol: generate every selected test clip from a source frame of its
speaker (``evaluate.source_frame``), its own audio and pose, with an emotion source of the same
speaker and emotion, and score it against the clip's real frames (docs/evaluation.md).

Besides the generated ``neutral`` and ``emotion`` variants every clip is scored as two
baselines, so each number has something to be better than: ``static_source`` (the source frame
repeated: what no motion at all scores) and ``reconstruction`` (FOMM driven by the real frames'
keypoints: what the first stage alone reaches). A ground-truth row scores the real clips
themselves with the no-reference metrics and the judges."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from eamm.config import EvaluateParams, GenerateParams
from eamm.face.landmarks import FaceModels
from eamm.generate import (
    EammModels,
    animate,
    detect_keypoints,
    frames_to_tensor,
    render,
    tensor_to_frames,
)
from eamm.judges import JUDGE_METRICS, Judges, judge_scores
from eamm.metrics import FACE, MOUTH, clip_landmarks, cpbd_clip, lmd, psnr, ssim
from eamm.train.augment import emotion_augment
from eamm.train.clips import Clip, fill_missing_rows, load_clips

VARIANTS = ("ground_truth", "static_source", "reconstruction", "neutral", "emotion")
METRICS = ("psnr", "ssim", "m_lmd", "f_lmd", "kp_motion", "cpbd", *JUDGE_METRICS)


@dataclass(frozen=True)
class ClipScore:
    dataset: str
    clip_id: str
    emotion: str | None
    variant: str  # one of VARIANTS
    scores: dict[str, float]


def select_clips(manifest: Path, params: EvaluateParams) -> list[Clip]:
    """The protocol's clips: ok clips of the split, a seeded sample of ``max_clips``."""
    clips = load_clips(manifest, (params.split,), min_frames=2)
    if params.max_clips is not None and len(clips) > params.max_clips:
        rng = np.random.default_rng(params.seed)
        picks = sorted(rng.choice(len(clips), params.max_clips, replace=False).tolist())
        clips = [clips[i] for i in picks]
    return clips


def emotion_source(clip: Clip, pool: list[Clip]) -> Clip:
    """Another clip of the same speaker and emotion when there is one, else the clip itself."""
    others = [
        c
        for c in pool
        if c.speaker == clip.speaker and c.emotion == clip.emotion and c.clip_id != clip.clip_id
    ]
    return others[0] if others else clip


def identity_source(clip: Clip, pool: list[Clip], source_frame: str) -> Clip:
    """The clip whose first frame is the identity image. ``neutral``: the first neutral clip
    (by id) of the same speaker, so the source carries no emotion and the ``neutral`` and
    ``emotion`` variants differ only by the emotion source; ``own``: the clip itself. Clips
    without an emotion label (LRW), or speakers without a neutral clip, use their own."""
    if source_frame == "own" or clip.emotion is None or clip.emotion == "neutral":
        return clip
    neutral = [c for c in pool if c.speaker == clip.speaker and c.emotion == "neutral"]
    return neutral[0] if neutral else clip


def _frames(clip: Clip, count: int, size: int) -> np.ndarray:
    return clip.frames(list(range(count)), size)


LANDMARK_SIZE = 256


def landmarks_256(frames: np.ndarray, face: FaceModels) -> np.ndarray:
    """68 points in pixels of a 256 crop: smaller frames are upscaled first (the face mesh
    needs the resolution), so LMD is comparable across model sizes."""
    import cv2

    if frames.shape[1] != LANDMARK_SIZE:
        frames = np.stack(
            [
                cv2.resize(f, (LANDMARK_SIZE, LANDMARK_SIZE), interpolation=cv2.INTER_CUBIC)
                for f in frames
            ]
        )
    return clip_landmarks(frames, face)


@torch.no_grad()
def keypoint_motion(
    nets: EammModels,
    source: torch.Tensor,
    mfcc: torch.Tensor,
    pose: torch.Tensor,
    real: torch.Tensor,
    gp: GenerateParams,
) -> dict[str, float]:
    """Stage 1 measured without the renderer: the audio keypoints' motion since the first frame
    against the FOMM detector's on the real frames (the targets stage 1 learns), mean distance
    in pixels of a 256 crop (keypoints span [-1, 1]). ``static_source`` is no motion at all;
    ``neutral`` is the audio branch's motion, as generation uses it (``audio_weight``). ``real``:
    the detector's keypoint values (T, K, 2) on the real frames."""
    feature = nets.audio_net(source, mfcc[None], pose[None], audio_weight=gp.audio_weight)[0]
    audio = nets.audio_head(feature)["value"]
    moved = real - real[:1]
    pixels = LANDMARK_SIZE / 2
    return {
        "static_source": float(moved.norm(dim=-1).mean()) * pixels,
        "neutral": float(((audio - audio[:1]) - moved).norm(dim=-1).mean()) * pixels,
    }


def _score(
    frames: np.ndarray, truth: np.ndarray, truth_lm: np.ndarray, face: FaceModels
) -> dict[str, float]:
    predicted_lm = landmarks_256(frames, face)
    return {
        "psnr": psnr(frames, truth),
        "ssim": ssim(frames, truth),
        "m_lmd": lmd(predicted_lm, truth_lm, MOUTH),
        "f_lmd": lmd(predicted_lm, truth_lm, FACE),
        "cpbd": cpbd_clip(frames),
    }


@torch.no_grad()
def evaluate_clips(
    clips: list[Clip],
    pool: list[Clip],
    nets: EammModels,
    params: EvaluateParams,
    gp: GenerateParams,
    device: torch.device,
    judges: Judges | None = None,
) -> tuple[list[ClipScore], dict]:
    """Scores of every clip and variant, and one middle frame per variant for the report."""
    size = nets.image_size
    face = FaceModels()
    judges = judges or Judges(device=device)
    scores: list[ClipScore] = []
    stills: dict = {}
    try:
        for k, clip in enumerate(clips):
            t = min(clip.num_frames, params.max_frames or clip.num_frames)
            truth = _frames(clip, t, size)
            mfcc = clip.array("mfcc.npy")[:t, :, 1:]
            pose = fill_missing_rows(clip.array("pose.npy"))[:t, :6]
            identity = identity_source(clip, pool, params.source_frame)
            source = _frames(identity, 1, size)
            emotion_clip = emotion_source(clip, pool)
            emo = _frames(emotion_clip, min(emotion_clip.num_frames, t), size)
            rng = np.random.default_rng([params.seed, k])
            transformed = emotion_augment(np.resize(emo, (t, *emo.shape[1:])), rng)

            source_tensor = frames_to_tensor(source, device)
            mfcc_tensor = torch.from_numpy(mfcc).float().to(device)
            pose_tensor = torch.from_numpy(pose).float().to(device)
            out = animate(
                nets,
                source_tensor,
                mfcc_tensor,
                pose_tensor,
                frames_to_tensor(transformed, device),
                gp,
            )
            # the real frames' keypoints drive the reconstruction and are stage 1's targets
            real_kp = detect_keypoints(nets, frames_to_tensor(truth, device), gp.batch_size)
            videos = {
                "static_source": np.repeat(source, t, axis=0),
                "reconstruction": tensor_to_frames(
                    render(
                        nets, source_tensor, nets.kp_detector(source_tensor), real_kp, gp.batch_size
                    )
                ),
                **{variant: tensor_to_frames(frames) for variant, frames in out.items()},
            }
            motion = keypoint_motion(
                nets, source_tensor, mfcc_tensor, pose_tensor, real_kp["value"], gp
            )
            truth_lm = landmarks_256(truth, face)
            audio = None
            if judges.syncnet is not None:
                audio = clip.audio()[: t * 640]

            judged = partial(judge_scores, judges, mfcc=mfcc, audio_16k=audio, emotion=clip.emotion)
            gt_scores = dict.fromkeys(METRICS, float("nan"))
            gt_scores.update(cpbd=cpbd_clip(truth), **judged(truth))
            scores.append(
                ClipScore(clip.dataset, clip.clip_id, clip.emotion, "ground_truth", gt_scores)
            )
            row = stills.setdefault(
                clip.emotion or clip.dataset,
                {"source": source[0], "ground_truth": truth[t // 2]},
            )
            for variant, video in videos.items():
                scores.append(
                    ClipScore(
                        clip.dataset,
                        clip.clip_id,
                        clip.emotion,
                        variant,
                        _score(video, truth, truth_lm, face)
                        | {"kp_motion": motion.get(variant, float("nan"))}
                        | judged(video),
                    )
                )
                row.setdefault(variant, video[t // 2])
    finally:
        face.close()
    return scores, stills


def aggregate(scores: list[ClipScore]) -> dict:
    """{dataset: {variant: {metric: mean over clips (NaN-aware), 'clips': n}}}."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    for s in scores:
        groups[s.dataset][s.variant].append(s.scores)
    table: dict = {}
    for dataset, variants in groups.items():
        table[dataset] = {}
        for variant, rows in variants.items():
            values = {}
            for metric in METRICS:
                column = np.array([r[metric] for r in rows], dtype=np.float64)
                finite = column[np.isfinite(column)]
                values[metric] = round(float(finite.mean()), 4) if len(finite) else None
            values["clips"] = len(rows)
            table[dataset][variant] = values
    return table
