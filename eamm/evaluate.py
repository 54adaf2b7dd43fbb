"""The evaluation: generate every selected test clip from a source frame of its speaker, its
own audio and pose, with an emotion source of the same speaker and emotion, and score it against
the clip's real frames under the named protocol ``evaluate.protocol`` (docs/evaluation.md): which
clips and frames, the source frame, the crops PSNR/SSIM/LMD and SyncNet read, the landmarker
and the audio offset all come from ``evaluate.protocols.<name>``.

Besides the generated ``neutral`` and ``emotion`` variants every clip is scored as two
baselines, so each number has something to be better than: ``static_source`` (the source frame
repeated: what no motion at all scores) and ``reconstruction`` (FOMM driven by the real frames'
keypoints: what the first stage alone reaches). A ground-truth row scores the real clips
themselves with the no-reference metrics and the judges."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from eamm.augment import emotion_augment
from eamm.checkpoint import peek_checkpoint, trained_on_other_data, unfinished
from eamm.clips import Clip, fill_missing_rows, load_clips
from eamm.config import (
    AUDIO_PER_FRAME,
    MEAD_EMOTIONS,
    EvaluateParams,
    EvaluationProtocol,
    GenerateParams,
)
from eamm.errors import EammError
from eamm.evaluation_journal import ClipRecord, EvaluationJournal
from eamm.face.landmarks import FaceModels
from eamm.generate import (
    EammModels,
    animate,
    detect_keypoints,
    frames_to_tensor,
    read_emotion,
    render,
    tensor_to_frames,
)
from eamm.judges.scoring import JUDGE_METRICS, Judges, judge_scores
from eamm.judges.sync import shift_audio
from eamm.metrics import FACE, MOUTH, clip_landmarks, cpbd_clip, lmd, psnr, ssim
from eamm.metrics.fid import FidFeatures
from eamm.stages import GENERATION_STAGES, JUDGES, checkpoint_path

# stage1: the neutral variant with stage 1's audio network (where stage 2's checkpoint is also
# there): what stage 2 changed
VARIANTS = ("ground_truth", "static_source", "reconstruction", "stage1", "neutral", "emotion")
STAGE3_METRICS = (  # emotion_keypoint_error
    "emotion_kp",
    "emotion_kp_from_neutral",
    "stage3_emotion_acc",
)
METRICS = (
    "psnr",
    "ssim",
    "m_lmd",
    "m_lmd_shape",
    "f_lmd",
    "kp_motion",
    *STAGE3_METRICS,
    "cpbd",
    *JUDGE_METRICS,
)
# Measured over all clips of a variant at once, not per clip (only with their weights set)
SET_METRICS = ("fid",)


@dataclass(frozen=True)
class ClipScore:
    dataset: str
    clip_id: str
    emotion: str | None
    variant: str  # one of VARIANTS
    scores: dict[str, float]


MIN_FRAMES = 2  # a clip's frames are scored against its first: one frame has no motion


def short_clips_note(manifest: Path, split: str) -> str:
    """The ok clips of ``split`` too short to score (``preprocess.min_frames`` 1 keeps them),
    said, not silently left out ("" when none, or no manifest: the scoring names that)."""
    if not manifest.is_file():
        return ""
    short = [c.clip_id for c in load_clips(manifest, (split,)) if c.num_frames < MIN_FRAMES]
    if not short:
        return ""
    return (
        f"{len(short)} ok '{split}' clip(s) of {manifest} have fewer than {MIN_FRAMES} frames and "
        f"are not scored ({', '.join(short[:3])}{', ...' if len(short) > 3 else ''})"
    )


def select_clips(manifest: Path, params: EvaluateParams) -> list[Clip]:
    """The protocol's clips: ok clips of the split (of its MEAD speakers, if it names them),
    a seeded sample of ``max_clips``. No such clip stops the run, naming the manifest."""
    protocol = params.resolved()
    clips = load_clips(manifest, (params.split,), min_frames=MIN_FRAMES)
    speakers = protocol.mead_speakers
    if speakers is not None:
        clips = [c for c in clips if c.dataset != "mead" or c.speaker in speakers]
    if not clips:
        who = f" of speakers {', '.join(speakers)}" if speakers is not None else ""
        short = short_clips_note(manifest, params.split)
        raise EammError(
            f"{manifest}: no ok clips in split '{params.split}'{who} "
            f"(evaluate.split, protocol '{params.protocol}')" + (f"; {short}" if short else "")
        )
    if protocol.max_clips is not None and len(clips) > protocol.max_clips:
        rng = np.random.default_rng(params.seed)
        picks = sorted(rng.choice(len(clips), protocol.max_clips, replace=False).tolist())
        clips = [clips[i] for i in picks]
    return clips


def cap_cuts(manifest: Path, params: EvaluateParams) -> bool:
    """Whether the run's caps leave out a clip or frame the protocol scores on this dataset
    (a cap above the split's size cuts nothing: the report called such a run capped)."""
    if not params.capped or not manifest.is_file():
        return False
    uncapped = params.model_copy(update={"max_clips": None, "max_frames": None})
    clips = select_clips(manifest, params)
    limit, protocol = params.resolved().max_frames, uncapped.resolved().max_frames
    frames_cut = limit != protocol and any(c.num_frames > limit for c in clips)
    return frames_cut or len(clips) < len(select_clips(manifest, uncapped))


def source_notes(manifest: Path, params: EvaluateParams) -> list[str]:
    """Scored MEAD clips whose sources fall back to the clip itself: a speaker without a
    neutral clip takes its own first frame (an easier source, already showing the emotion),
    and one without another clip of the emotion its own video as the emotion source (which
    shows the answer to the emotion variant, ``emotion_kp`` and stage 3's classifier)."""
    if not manifest.is_file():
        return []
    pool = load_clips(manifest, (params.split,), min_frames=MIN_FRAMES)
    scored = [c for c in select_clips(manifest, params) if c.emotion is not None]
    neutral = params.resolved().source_frame == "neutral"
    own_frame = [
        c.clip_id
        for c in scored
        if neutral and c.emotion != "neutral" and identity_source(c, pool, "neutral") is c
    ]
    own_video = [c.clip_id for c in scored if emotion_source(c, pool) is c]
    found = (
        (own_frame, "are of speakers without a neutral clip: their own first frame is the "
         "source, an easier one"),
        (own_video, "have no other clip of their speaker and emotion: their own video is the "
         "emotion source, which shows the emotion variant its answer"),
    )  # fmt: skip
    return [
        f"{len(ids)} scored clip(s) of {manifest} {why} ({', '.join(ids[:3])}"
        f"{', ...' if len(ids) > 3 else ''})"
        for ids, why in found
        if ids
    ]


def emotion_source(clip: Clip, pool: list[Clip]) -> Clip:
    """Another clip of the same speaker and emotion when there is one, else the clip itself
    (``source_notes`` says so). LRW's clips have neither label: another test clip, of
    whoever speaks in it."""
    others = [
        c
        for c in pool
        if c.speaker == clip.speaker and c.emotion == clip.emotion and c.clip_id != clip.clip_id
    ]
    return others[0] if others else clip


def identity_source(clip: Clip, pool: list[Clip], source_frame: str) -> Clip:
    """The clip whose first frame is the identity image. ``neutral``: the first neutral clip
    (by id) of the same speaker, so the source carries no emotion and the ``neutral`` and
    ``emotion`` variants differ only by the emotion source (a neutral clip too: its own frame
    only where it is that first one); ``own``: the clip itself. Clips without an emotion label
    (LRW), or speakers without a neutral clip, use their own."""
    if source_frame == "own" or clip.emotion is None:
        return clip
    neutral = [c for c in pool if c.speaker == clip.speaker and c.emotion == "neutral"]
    return neutral[0] if neutral else clip


def stage3_control(clip: Clip, pool: list[Clip]) -> Clip | None:
    """Stage 3's control: the speaker's neutral clip as emotion source, augmented alike (MEAD;
    a neutral clip is its own control; None for LRW and a speaker without a neutral clip)."""
    if clip.emotion is None:
        return None
    if clip.emotion == "neutral":
        return clip
    control = identity_source(clip, pool, "neutral")
    return None if control.clip_id == clip.clip_id else control


def driving_rows(clip: Clip, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The audio branch's inputs for a clip's first ``count`` frames: the MFCC windows without
    coefficient 0 (EAMM feeds 12 of the 13) and the 6 pose values, rows without a face filled."""
    mfcc = clip.array("mfcc.npy")[:count, :, 1:]
    pose = fill_missing_rows(clip.array("pose.npy"))[:count, :6]
    return mfcc, pose


def _frames(clip: Clip, count: int, size: int) -> np.ndarray:
    return clip.frames(list(range(count)), size)


LANDMARK_SIZE = 256  # keypoint motion is measured in pixels of a crop this size


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames at ``size`` (bicubic): landmarkers need the resolution."""
    import cv2

    if frames.shape[1] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in frames])


@dataclass(frozen=True)
class Views:
    """What a protocol measures of one video: the frames PSNR/SSIM compare and which of them
    exist (a frame whose face was not found has no aligned crop), the 68 points LMD compares
    (NaN where no face), and SyncNet's input frames (None: the video itself)."""

    image: np.ndarray
    valid: np.ndarray
    landmarks: np.ndarray
    sync: np.ndarray | None = None


def without_frames(truth: Views, left_out: np.ndarray) -> Views:
    """``truth`` with the ``left_out`` frames (a boolean mask or indices) out of PSNR, SSIM
    and LMD: the identity frame where ``score_source_frame`` is false, frames where
    preprocessing found no face."""
    valid, landmarks = truth.valid.copy(), truth.landmarks.copy()
    valid[left_out], landmarks[left_out] = False, np.nan
    return replace(truth, valid=valid, landmarks=landmarks)


def face_frames(clip: Clip, count: int) -> np.ndarray:
    """Which of the clip's first ``count`` frames preprocessing found a face in (its stored
    pose row is not NaN)."""
    return np.isfinite(clip.array("pose.npy")[:count]).all(axis=1)


class ProtocolScorer:
    """The protocol's crops, landmarks and image metrics, holding the landmarker it names.

    ``ours``: the frames as generated (the aligned crop at the model's resolution), mediapipe's
    68 points on them resized to 256, SSIM with Wang et al.'s Gaussian window. ``eat``: dlib's
    points on the frames resized to 256, each frame aligned on them into a 128 crop (PSNR, SSIM
    with scikit-image's uniform window, and dlib's points again on the crop for a centred LMD),
    PC-AVS's 224 crop for SyncNet (``eamm/metrics/dlib68.py``)."""

    def __init__(self, protocol: EvaluationProtocol, sync_crops: bool = False) -> None:
        self.protocol = protocol
        self.sync_crops = sync_crops and protocol.sync_crop == "pcavs224"
        self.face: FaceModels | None = None
        self.dlib = None
        if protocol.landmarker == "dlib68":
            from eamm.metrics.dlib68 import Dlib68

            self.dlib = Dlib68()
        else:
            self.face = FaceModels()

    def close(self) -> None:
        if self.face is not None:
            self.face.close()

    def views(self, frames: np.ndarray) -> Views:
        from eamm.metrics import dlib68

        p = self.protocol
        large = _resized(frames, p.landmark_size)
        if self.dlib is None:
            points = clip_landmarks(large, self.face)
        else:
            crop = p.image_crop == "dlib128"
            upsample = dlib68.CROP_UPSAMPLE if crop else dlib68.LANDMARK_UPSAMPLE
            points = self.dlib.clip(large, upsample)
        sync = dlib68.pcavs_crops(large, points) if self.sync_crops else None
        if p.image_crop == "aligned":
            return Views(frames, np.ones(len(frames), bool), points, sync)
        crops, valid = dlib68.aligned_crops(large, points)
        landmarks = self.dlib.clip(crops, dlib68.LANDMARK_UPSAMPLE)
        landmarks[~valid] = np.nan
        return Views(crops, valid, landmarks, sync)

    def score(self, video: Views, truth: Views) -> dict[str, float]:
        """PSNR and SSIM over the frames both sides have, M-LMD and F-LMD, and the mouth's
        shape distance (``m_lmd_shape``: M-LMD with each frame's mouth points centred, whatever
        the protocol's ``lmd_centred``): where the head is moves M-LMD far more than how the
        mouth is open, so only this one tells a mouth that follows the speech."""
        p = self.protocol
        both = video.valid & truth.valid
        nan = float("nan")
        a, b = video.image[both], truth.image[both]
        return {
            "psnr": psnr(a, b) if both.any() else nan,
            "ssim": ssim(a, b, window=p.ssim) if both.any() else nan,
            "m_lmd": lmd(video.landmarks, truth.landmarks, MOUTH, centred=p.lmd_centred),
            "m_lmd_shape": lmd(video.landmarks, truth.landmarks, MOUTH, centred=True),
            "f_lmd": lmd(video.landmarks, truth.landmarks, FACE, centred=p.lmd_centred),
        }


def delay_audio(samples: np.ndarray, frames: int) -> np.ndarray:
    """16 kHz samples delayed by ``frames`` video frames (silence before; negative advances),
    the same length."""
    if frames == 0:
        return samples
    shift = abs(frames) * AUDIO_PER_FRAME
    pad = np.zeros(min(shift, len(samples)), samples.dtype)
    if frames > 0:
        return np.concatenate([pad, samples[: len(samples) - len(pad)]])
    return np.concatenate([samples[len(pad) :], pad])


def judged_with(
    judges: Judges,
    frames: np.ndarray,
    sync_frames: np.ndarray | None,
    mfcc: np.ndarray,
    audio_16k: np.ndarray | None,
    emotion: str | None,
) -> dict[str, float]:
    """The judges' scores, SyncNet's on ``sync_frames`` where the protocol has its own crop
    (none where no face was found: no SyncNet score)."""
    if sync_frames is None or judges.syncnet is None:
        return judge_scores(judges, frames, mfcc=mfcc, audio_16k=audio_16k, emotion=emotion)
    scores = judge_scores(
        replace(judges, syncnet=None), frames, mfcc=mfcc, audio_16k=audio_16k, emotion=emotion
    )
    if not len(sync_frames):
        return scores | {"syncnet_conf": float("nan"), "syncnet_dist": float("nan")}
    sync = judge_scores(
        replace(judges, classifier=None, expert=None),
        sync_frames,
        mfcc=mfcc,
        audio_16k=audio_16k,
        emotion=None,
    )
    scores.update(syncnet_conf=sync["syncnet_conf"], syncnet_dist=sync["syncnet_dist"])
    return scores


def audio_keypoints(
    nets: EammModels,
    source: torch.Tensor,
    mfcc: torch.Tensor,
    pose: torch.Tensor,
    gp: GenerateParams,
) -> dict[str, torch.Tensor]:
    """The audio branch's keypoints of every frame (T, K, ...), unsmoothed, as generation's
    audio weight makes them."""
    feature = nets.audio_net(source, mfcc[None], pose[None], audio_weight=gp.audio_weight)[0]
    return nets.audio_head(feature)


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
    return motion_error(audio_keypoints(nets, source, mfcc, pose, gp)["value"], real)


def motion_error(
    audio: torch.Tensor, real: torch.Tensor, faces: np.ndarray | None = None
) -> dict[str, float]:
    """``keypoint_motion`` from the audio keypoints' values (T, K, 2) already computed; with
    ``faces`` (``face_frames``), over the frames with a face, the motion since the first of
    them (the detector's keypoints on a frame without a face are noise)."""
    start, keep = _face_span(faces, real.device)
    moved = (real - real[start : start + 1])[keep]
    pixels = LANDMARK_SIZE / 2
    return {
        "static_source": float(moved.norm(dim=-1).mean()) * pixels,
        "neutral": float(((audio - audio[start : start + 1])[keep] - moved).norm(dim=-1).mean())
        * pixels,
    }


def _face_span(faces: np.ndarray | None, device: torch.device) -> tuple[int, slice | torch.Tensor]:
    """(first frame with a face, the frames to average over, as a mask on ``device``): every
    frame where all have one (the same reduction, so the same numbers as before faces were
    read); none where no frame has one (a mean over nothing: no value, as PSNR and LMD have
    none then)."""
    if faces is None or faces.all():
        return 0, slice(None)
    return int(np.argmax(faces)), torch.from_numpy(faces).to(device)


@torch.no_grad()
def emotion_keypoint_error(
    nets: EammModels,
    audio: dict[str, torch.Tensor],
    real: torch.Tensor,
    sources: dict[str, torch.Tensor],
    batch_size: int,
    emotion: str | None = None,
    faces: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Stage 3 measured without the renderer, on what it learns: the residual of the emotion
    keypoints, the detector's keypoint values on the real frames minus the audio keypoints'
    (``real`` and ``audio``), mean distance over frames and emotion keypoints in pixels of a
    256 crop. ``neutral``'s ``emotion_kp``: the residual as it is; ``emotion``'s: after stage
    3's displacement read from ``sources["emotion_kp"]`` (the emotion source's augmented
    frames), and ``emotion_kp_from_neutral`` from ``sources["emotion_kp_from_neutral"]``
    when given (the speaker's neutral clip, augmented alike): a stage 3 that reads the
    expression fits better from the right source. With the clip's ``emotion``,
    ``emotion``'s ``stage3_emotion_acc``: 1 when stage 3's own classifier names it from the
    emotion source's frames (its other training target). Empty without an emotion network.
    ``faces``: only the frames where preprocessing found a face are averaged."""
    if nets.emotion is None:
        return {}
    idx = torch.tensor(nets.emotion_kp, device=real.device)
    residual = real[:, idx] - audio["value"][:, idx]
    pixels = LANDMARK_SIZE / 2
    _, keep = _face_span(faces, real.device)

    def error(moved: torch.Tensor) -> float:
        return float((residual - moved)[keep].norm(dim=-1).mean()) * pixels

    read = {name: read_emotion(nets, f, audio, batch_size) for name, f in sources.items()}
    scores = {name: error(out["value"]) for name, out in read.items()}
    if emotion is not None:  # the classifier's mean logits over the emotion source's frames
        named = MEAD_EMOTIONS[int(read["emotion_kp"]["logits"].float().mean(0).argmax())]
        scores["stage3_emotion_acc"] = float(named == emotion)
    return {"neutral": {"emotion_kp": error(torch.zeros_like(residual))}, "emotion": scores}


def _augmented(
    clip: Clip, count: int, size: int, seed: list[int], device: torch.device
) -> torch.Tensor:
    """The clip's first ``count`` frames (repeated where it is shorter) under stage 3's
    augmentation (EAMM's), drawn from ``seed``: an emotion source as generation reads it."""
    frames = _frames(clip, min(clip.num_frames, count), size)
    augmented = emotion_augment(
        np.resize(frames, (count, *frames.shape[1:])), np.random.default_rng(seed)
    )
    return frames_to_tensor(augmented, device)


@dataclass
class _Generated:
    """One clip's videos and what scoring them needs, from the networks' half of the loop."""

    clip: Clip
    source: np.ndarray
    truth: np.ndarray
    mfcc: np.ndarray
    videos: dict[str, np.ndarray]
    motion: dict[str, float]
    emotion_kp: dict[str, dict[str, float]]
    own_source: bool  # the identity image is the clip's own first frame
    faces: np.ndarray  # which frames preprocessing found a face in (``face_frames``)


@torch.no_grad()
def _generate(
    k: int,
    clip: Clip,
    pool: list[Clip],
    nets: EammModels,
    params: EvaluateParams,
    protocol: EvaluationProtocol,
    gp: GenerateParams,
    device: torch.device,
    stage_one: EammModels | None = None,
) -> _Generated:
    """The clip's generated variants, both baselines and stage 1's keypoint motion (and, with
    ``stage_one``, the ``stage1`` variant: stage 1's audio network without stage 2)."""
    size = nets.image_size
    t = min(clip.num_frames, protocol.max_frames or clip.num_frames)
    truth = _frames(clip, t, size)
    mfcc, pose = driving_rows(clip, t)
    identity = identity_source(clip, pool, protocol.source_frame)
    source = _frames(identity, 1, size)
    emotion_clip = emotion_source(clip, pool)
    stage3_sources = {"emotion_kp": _augmented(emotion_clip, t, size, [params.seed, k], device)}
    control = stage3_control(clip, pool)
    if control is not None:
        stage3_sources["emotion_kp_from_neutral"] = _augmented(
            control, t, size, [params.seed, k], device
        )

    source_tensor = frames_to_tensor(source, device)
    mfcc_tensor = torch.from_numpy(mfcc).float().to(device)
    pose_tensor = torch.from_numpy(pose).float().to(device)
    out, audio = animate(
        nets, source_tensor, mfcc_tensor, pose_tensor, stage3_sources["emotion_kp"], gp
    )
    # the real frames' keypoints drive the reconstruction and are stage 1's targets
    real_kp = detect_keypoints(nets, frames_to_tensor(truth, device), gp.batch_size)
    reconstruction = render(
        nets, source_tensor, nets.kp_detector(source_tensor), real_kp, gp.batch_size
    )
    videos = {
        "static_source": np.repeat(source, t, axis=0),
        "reconstruction": tensor_to_frames(reconstruction),
        **{variant: tensor_to_frames(frames) for variant, frames in out.items()},
    }
    faces = face_frames(clip, t)
    motion = motion_error(audio["value"], real_kp["value"], faces)
    if stage_one is not None:
        frames, before = animate(stage_one, source_tensor, mfcc_tensor, pose_tensor, None, gp)
        videos["stage1"] = tensor_to_frames(frames["neutral"])
        motion["stage1"] = motion_error(before["value"], real_kp["value"], faces)["neutral"]
    emotion_kp = emotion_keypoint_error(
        nets, audio, real_kp["value"], stage3_sources, gp.batch_size, clip.emotion, faces
    )
    own = identity.clip_id == clip.clip_id  # the pool's copy of the clip is another object
    return _Generated(clip, source, truth, mfcc, videos, motion, emotion_kp, own, faces)


@torch.no_grad()  # grad mode is per thread: scoring runs in its own
def _score(
    g: _Generated,
    scorer: ProtocolScorer,
    judges: Judges,
    fid: FidFeatures | None,
    protocol: EvaluationProtocol,
) -> tuple[list[ClipScore], dict[str, np.ndarray]]:
    """The ground-truth row and every variant's row of one generated clip, and with ``fid``
    the FID features of the real frames and of every variant."""
    clip, truth, t = g.clip, g.truth, len(g.truth)
    truth_views = scorer.views(truth)
    if protocol.image_crop == "aligned" and not g.faces.all():  # (``eat``: dlib's own crops)
        truth_views = without_frames(truth_views, ~g.faces)
    features = {}
    if fid is not None:
        features["ground_truth"] = fid.features(truth_views.image[truth_views.valid])
    audio = None
    if judges.syncnet is not None:
        audio = delay_audio(clip.audio()[: t * AUDIO_PER_FRAME], protocol.audio_offset)
    judged_mfcc = shift_audio(g.mfcc, protocol.audio_offset) if protocol.audio_offset else g.mfcc
    judged = partial(judged_with, judges, mfcc=judged_mfcc, audio_16k=audio, emotion=clip.emotion)
    gt_scores = dict.fromkeys(METRICS, float("nan"))
    gt_scores.update(cpbd=cpbd_clip(truth), **judged(truth, truth_views.sync))
    rows = [ClipScore(clip.dataset, clip.clip_id, clip.emotion, "ground_truth", gt_scores)]
    compared = truth_views
    if g.own_source and not protocol.score_source_frame:
        compared = without_frames(truth_views, [0])
    for variant, video in g.videos.items():
        views = scorer.views(video)
        if fid is not None:
            features[variant] = fid.features(views.image[views.valid])
        scores = (
            scorer.score(views, compared)
            | {"cpbd": cpbd_clip(video)}
            | {"kp_motion": g.motion.get(variant, float("nan"))}
            | {m: g.emotion_kp.get(variant, {}).get(m, float("nan")) for m in STAGE3_METRICS}
            | judged(video, views.sync)
        )
        rows.append(ClipScore(clip.dataset, clip.clip_id, clip.emotion, variant, scores))
    return rows, features


def evaluate_clips(
    clips: list[Clip],
    pool: list[Clip],
    nets: EammModels,
    params: EvaluateParams,
    gp: GenerateParams,
    device: torch.device,
    judges: Judges | None = None,
    fid: FidFeatures | None = None,
    stage_one: EammModels | None = None,
    journal: EvaluationJournal | None = None,
    progress: Callable[[int, int, str, float | None], None] | None = None,
) -> tuple[list[ClipScore], dict]:
    """Scores of every clip and variant, and one middle frame per variant for the report;
    ``fid`` gathers the protocol's frames of every variant (FID is over all clips at once);
    ``stage_one`` (``eamm.generate.stage_one_models``) adds the ``stage1`` variant. With a
    ``journal`` (``eamm.evaluation_journal``) a clip it holds is read back, not scored again,
    and each clip scored is recorded in it; ``progress`` hears of each finished clip (clips
    done, of how many, its id, the seconds it took: None where read back).

    A clip is scored (landmarks, SSIM, CPBD, judges: mostly single-threaded NumPy and the
    face mesh) in one worker thread while the next clip is generated: the same rows in the
    same order, in less time on a few cores."""
    protocol = params.resolved()
    judges = judges or Judges(device=device)
    scorer = ProtocolScorer(protocol, sync_crops=judges.syncnet is not None)
    scores: list[ClipScore] = []
    stills: dict = {}
    pending: list[tuple[int, str, dict, float, Future]] = []
    done = 0

    def add(record: ClipRecord, seconds: float | None) -> None:
        """The record's rows, stills and features, in clip order."""
        nonlocal done
        scores.extend(ClipScore(**row) for row in record.scores)
        row = stills.setdefault(record.group, {})
        for name, frame in record.stills.items():
            row.setdefault(name, frame)
        for variant, features in record.fid.items():
            fid.add(variant, features)
        done += 1
        if progress is not None:
            progress(done, len(clips), record.clip_id, seconds)

    def collect() -> None:
        k, group, added, start, future = pending.pop(0)
        rows, features = future.result()
        record = ClipRecord(clips[k].clip_id, [_plain(r) for r in rows], group, added, features)
        if journal is not None:
            journal.save(k, record)
        add(record, time.perf_counter() - start)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="score") as worker:
            for k, clip in enumerate(clips):
                record = journal.load(k, clip.clip_id) if journal is not None else None
                if record is not None:
                    while pending:  # the clips before it first: rows and features in order
                        collect()
                    add(record, None)
                    continue
                start = time.perf_counter()
                g = _generate(k, clip, pool, nets, params, protocol, gp, device, stage_one)
                group, added = _first_stills(stills, g)
                future = worker.submit(_score, g, scorer, judges, fid, protocol)
                pending.append((k, group, added, start, future))
                if len(pending) > 1:  # one clip generated ahead: memory stays two clips
                    collect()
            while pending:
                collect()
    finally:
        scorer.close()
    return scores, stills


def _first_stills(stills: dict, g: _Generated) -> tuple[str, dict[str, np.ndarray]]:
    """The report's row of the clip's group (its emotion, or its dataset) gets the clip's middle
    frames where it has none yet; returns the group and what this clip gave it."""
    t = len(g.truth)
    group = g.clip.emotion or g.clip.dataset
    row = stills.setdefault(group, {})
    frames = {"source": g.source[0], "ground_truth": g.truth[t // 2]}
    frames |= {variant: video[t // 2] for variant, video in g.videos.items()}
    added = {name: frame for name, frame in frames.items() if name not in row}
    row.update(added)
    return group, added


def _plain(row: ClipScore) -> dict:
    """The row's fields with NumPy floats as Python floats: as the journal reads them back."""
    scores = {m: float(v) if isinstance(v, np.floating) else v for m, v in row.scores.items()}
    return {**row.__dict__, "scores": scores}


def aggregate(scores: list[ClipScore]) -> dict:
    """{dataset: {variant: {metric: mean over clips (NaN-aware), 'clips': n}}}; where a metric
    has a value for some clips only (no face found in the others), ``<metric>_clips`` counts
    them, so a mean over 3 of 20 clips is not read as one over 20."""
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
                if 0 < len(finite) < len(rows):
                    values[f"{metric}_clips"] = len(finite)
            values["clips"] = len(rows)
            table[dataset][variant] = values
    return table


def add_set_scores(table: dict, dataset: str, metric: str, values: dict[str, float]) -> None:
    """A set-level metric of each variant (``SET_METRICS``) into ``aggregate``'s table."""
    for variant, value in values.items():
        table[dataset][variant][metric] = round(value, 4) if np.isfinite(value) else None


def generation_notes(checkpoints: str | Path, data_root: str | Path | None = None) -> list[str]:
    """One line per generation stage the checkpoint folder lacks, saying what the scores are
    then of: without stage 2 the audio network is stage 1's, without stage 3 there is no
    ``emotion`` variant and its relations are not measured. A checkpoint whose training
    stopped early is said too, and, with ``data_root``, one trained on other manifests than
    the ones scored (a copied models/ folder, a changed split: its test clips may have been
    its training clips)."""
    root = Path(checkpoints)
    notes = []
    stage_two = checkpoint_path(root, "finetune_a2fd")
    if not stage_two.is_file():
        notes.append(
            f"{stage_two} is missing: the generated variants use stage 1's audio network "
            f"({checkpoint_path(root, 'train_a2fd')})"
        )
    stage_three = checkpoint_path(root, "train_emotion")
    if not stage_three.is_file():
        notes.append(
            f"{stage_three} is missing: no `emotion` variant; stage 3's relations are not measured"
        )
    for stage in (*GENERATION_STAGES, *JUDGES):
        path = checkpoint_path(root, stage)
        if not path.is_file():
            continue
        state = peek_checkpoint(path)
        if note := unfinished(state, path, stage):  # a killed training's checkpoint
            notes.append(note)
        if data_root is not None and trained_on_other_data(state, stage, Path(data_root)):
            notes.append(
                f"{path} was trained on other manifests than {Path(data_root)}'s (their content "
                "differs): clips scored as held out may have been its training clips"
            )
    return notes
