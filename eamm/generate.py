"""Emotional talking-face generation (reference section 4), RGB throughout, CPU or GPU.

photo + speech + emotion video (+ head pose) -> ``<out>.mp4`` (emotion), ``<out>_neutral.mp4``
and ``<out>_compare.mp4`` (aligned emotion video | neutral | emotion), 25 fps, audio muxed.
Without an emotion video or emotion checkpoint, ``<out>.mp4`` is the neutral video (and a note
says so; an earlier run's ``_neutral`` and ``_compare`` videos beside it are removed, named in
another). Differences from EAMM's demo: the photo is RGB (EAMM fed BGR), the emotion-video
augmentation is seeded (same inputs, same video), the output is always 25 fps, and frames
stream through the networks and encoders a window at a time, so memory does not grow with the
length of the speech.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from eamm.atomic import remove_leftovers, replacing_all
from eamm.audio import (
    end_pad_for_frames,
    fit_length,
    load_audio_16k_mono,
    mfcc_window_range,
    write_wav_s16,
)
from eamm.augment import mouth_noise, random_flip, random_perspective, random_rotation
from eamm.checkpoint import check_lineage, load_checkpoint, require_stage, unfinished
from eamm.clips import interpolate_missing_rows
from eamm.config import AUDIO_RATE, VIDEO_FPS, GenerateParams, PreprocessParams
from eamm.errors import EammError, MediaError
from eamm.face.landmarks import FaceModels, LandmarkBackend, make_backend
from eamm.face.pose import pose_row
from eamm.face.search import face_region, find_small_face
from eamm.face.similarity import Similarity
from eamm.face.template import load_template
from eamm.folder_lock import output_lock
from eamm.media import VideoWriter
from eamm.media.image import read_image
from eamm.models import (
    AudioKeypointHead,
    AudioToFacialDynamics,
    EmotionDisplacement,
    KPDetector,
    OcclusionAwareGenerator,
)
from eamm.preprocess.clip import (
    MAX_ROLL,
    FrameChanges,
    clip_transform,
    face_reading,
    find_cut,
    thumbnail,
)
from eamm.preprocess.errors import NoFaceError
from eamm.smoothing import OneEuro, one_euro
from eamm.stages import checkpoint_path
from eamm.tensors import pick_device
from eamm.video.decode import decode_frames, open_video, resample_fps, stream_info
from eamm.video.warp import warp_to_crop

# Frames per streaming window (2.56 s; a multiple of 4, see EmotionSource): the audio network,
# keypoint head and smoothing run a window at a time (~2 MB a frame at any image size), the
# renderer and encoders a batch at a time.
WINDOW_FRAMES = 64
KP_KEYS = ("value", "jacobian")
# ``emotion_augment``'s rotation, perspective shift and expansion (EAMM's stage-3 values).
AUGMENT_ROTATION, AUGMENT_SHIFT, AUGMENT_EXPAND = 30.0, 30, 40


class SilentAudioError(MediaError):
    code = "silent_audio"


@dataclass
class EammModels:
    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    audio_net: AudioToFacialDynamics
    audio_head: AudioKeypointHead
    emotion: EmotionDisplacement | None
    emotion_kp: list[int]
    image_size: int
    # How the generator runs (``tune_renderer``): autocast dtype (None: as loaded) and, for a
    # compiled generator, one batch shape (short batches padded to ``fixed_batch``).
    render_dtype: torch.dtype | None = None
    fixed_batch: int | None = None
    notes: list[str] = field(default_factory=list)  # one line each: a stage-1 fallback


def _sizes(state: dict, fallback_model: dict | None) -> dict:
    model = state.get("params", {}).get("model", {})
    profiles = model.get("profiles") or (fallback_model or {}).get("profiles") or {}
    name = model.get("profile")
    if name not in profiles:
        raise EammError(f"checkpoint trained with model profile '{name}', which is not defined")
    return profiles[name]


def _own_sizes(state: dict, fomm_sizes: dict, fallback_model: dict | None) -> dict:
    """The size profile ``state`` records, or train_fomm's where it records none."""
    if not state.get("params", {}).get("model"):
        return fomm_sizes
    return _sizes(state, fallback_model)


def _load_state(net: torch.nn.Module, name: str, state: dict, where: Path) -> None:
    """``net`` from the checkpoint ``state``'s weights of ``name``, or one line naming ``where``."""
    try:
        net.load_state_dict(state["models"][name])
    except (KeyError, RuntimeError) as err:
        raise EammError(
            f"{where}: checkpoint for '{name}' is missing or does not match the model "
            f"({str(err).splitlines()[0][:160]})"
        ) from None


def load_models(
    checkpoints: str | Path,
    device: torch.device,
    params: GenerateParams | None = None,
    fallback_model: dict | None = None,
) -> EammModels:
    """Networks from ``<checkpoints>/{fomm,a2fd_finetune,emotion}/checkpoint.pt``, set up as
    ``params`` says (its generator source and speed fields): the one loader generation and
    evaluation share, so a setting cannot apply in one and not the other."""
    gp = params or GenerateParams()
    from eamm.models.build import build_audio_networks, build_emotion_net, build_networks

    root = Path(checkpoints)
    notes: list[str] = []
    fomm_path = checkpoint_path(root, "train_fomm")
    fomm = load_checkpoint(fomm_path, "cpu")
    audio_path, audio_stage = checkpoint_path(root, "finetune_a2fd"), "finetune_a2fd"
    if not audio_path.is_file():
        stage_one = checkpoint_path(root, "train_a2fd")
        if not stage_one.is_file():
            raise EammError(f"{audio_path}: checkpoint does not exist (nor stage 1's {stage_one})")
        notes.append(f"{audio_path} missing: the audio network of stage 1 ({stage_one})")
        audio_path, audio_stage = stage_one, "train_a2fd"
    audio = load_checkpoint(audio_path, "cpu")
    emotion_path = checkpoint_path(root, "train_emotion")
    emotion = load_checkpoint(emotion_path, "cpu") if emotion_path.is_file() else None
    loaded = [(fomm_path, fomm), (audio_path, audio)]
    for path, state, stage in (
        (fomm_path, fomm, "train_fomm"),
        (audio_path, audio, audio_stage),
        (emotion_path, emotion, "train_emotion"),
    ):
        if state is not None:
            require_stage(state, path, stage)
            if note := unfinished(state, path, stage):
                notes.append(note)
    stages = ("train_fomm", "train_a2fd", "finetune_a2fd")
    check_lineage(
        loaded if emotion is None else [*loaded, (emotion_path, emotion)],
        {stage: checkpoint_path(root, stage) for stage in stages},
    )
    # each network as the checkpoint holding its weights trained it: settings that are not
    # weights (the keypoint heads' temperature, the audio network's pose normalisation) were
    # taken from train_fomm's record, so a stage trained under another profile edit ran with
    # train_fomm's settings
    sizes = _sizes(fomm, fallback_model)
    generator_state = (
        audio if gp.generator_from == "finetune" and "generator" in audio["models"] else fomm
    )
    audio_sizes = _own_sizes(audio, sizes, fallback_model)
    nets = build_networks(sizes)
    if audio_sizes != sizes:  # else the networks just built are the audio checkpoint's
        nets.update(build_audio_networks(audio_sizes))
        if generator_state is audio:
            nets["generator"] = build_networks(audio_sizes)["generator"]
    sources = {"kp_detector": fomm, "audio_feature": audio, "kp_detector_a": audio}
    sources["generator"] = generator_state
    for name, state in sources.items():
        _load_state(nets[name], name, state, audio_path if state is audio else fomm_path)
    emotion_net, emotion_kp = None, []
    if emotion is not None:
        if "emotion_kp" not in emotion:
            raise EammError(f"{emotion_path}: not an emotion checkpoint (no emotion_kp)")
        emotion_kp = list(emotion["emotion_kp"])
        if len(gp.emotion_scale) != len(emotion_kp):  # extra ones would scale nothing
            raise EammError(
                f"params: generate.emotion_scale has {len(gp.emotion_scale)} entries for the "
                f"{len(emotion_kp)} emotion keypoints of {emotion_path} "
                "(train_emotion.num_emotion_kp): give one per keypoint"
            )
        emotion_net = build_emotion_net(_own_sizes(emotion, sizes, fallback_model), len(emotion_kp))
        try:
            emotion_net.load_state_dict(emotion["models"]["emo_detector"])
        except (KeyError, RuntimeError) as err:
            raise EammError(f"{emotion_path}: emotion checkpoint does not match ({err})") from None
    for net in [*nets.values(), emotion_net]:
        if net is not None:
            net.to(device).eval()
    models = EammModels(
        nets["kp_detector"],
        nets["generator"],
        nets["audio_feature"],
        nets["kp_detector_a"],
        emotion_net,
        emotion_kp,
        sizes["image_size"],
        notes=notes,
    )
    return tune_renderer(models, gp)


def stage_one_models(checkpoints: str | Path, models: EammModels) -> EammModels | None:
    """``models`` with stage 1's audio network in place of stage 2's and no stage 3: what the
    evaluation's ``stage1`` variant renders, so that what stage 2 changed is measured. None
    unless both stages' checkpoints are there (``load_models`` has checked that stage 2 was
    trained from this stage 1)."""
    from eamm.models.build import build_audio_networks

    root = Path(checkpoints)
    stage_one = checkpoint_path(root, "train_a2fd")
    if not (checkpoint_path(root, "finetune_a2fd").is_file() and stage_one.is_file()):
        return None
    state = load_checkpoint(stage_one, "cpu")
    nets = build_audio_networks(_sizes(state, None))
    device = next(models.audio_net.parameters()).device
    for name, net in nets.items():
        _load_state(net, name, state, stage_one)
        net.to(device).eval()
    return replace(
        models,
        audio_net=nets["audio_feature"],
        audio_head=nets["kp_detector_a"],
        emotion=None,
        emotion_kp=[],
        notes=[],
    )


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); without them torch emulates
    bf16, about 30x slower than fp32 for the renderer (README, "Benchmarks")."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def tune_renderer(models: EammModels, gp: GenerateParams) -> EammModels:
    """``models`` (changed in place) with the generator set up as ``gp``'s speed fields ask:
    NHWC weights, bf16 autocast, ``torch.compile``. At the defaults nothing changes."""
    if gp.channels_last:
        models.generator.to(memory_format=torch.channels_last)
    if gp.precision == "bf16":
        models.render_dtype = torch.bfloat16
    if gp.torch_compile:
        models.generator = torch.compile(models.generator)
        models.fixed_batch = gp.batch_size
    return models


def _render_context(models: EammModels, device: torch.device) -> AbstractContextManager:
    if models.render_dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=models.render_dtype)


def frames_to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1] on ``device``."""
    return (
        torch.from_numpy(np.ascontiguousarray(frames))
        .to(device)
        .movedim(-1, -3)
        .float()
        .div_(255.0)
    )


def tensor_to_frames(frames: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [0, 1] -> uint8 (..., H, W, 3) on the CPU."""
    return (frames.clamp(0, 1).movedim(-3, -1) * 255 + 0.5).byte().cpu().numpy()


def align_photo(
    path: Path, size: int, params: PreprocessParams, models: FaceModels, backend: LandmarkBackend
) -> tuple[np.ndarray, np.ndarray]:
    """(aligned crop at ``size``, its 256-px crop for pose, faces found) of a photo of any
    size; with several faces the largest is taken (``preprocess.on_multiple_faces``). A face
    too small to be seen in the whole photo is searched for in tiles of it
    (``eamm.face.search``)."""
    image = read_image(path)
    template = load_template(params.template, 256)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    try:
        transform, faces = clip_transform([frame], path, template, params, models, backend)
    except NoFaceError:
        box = find_small_face(image, params.detect_width, models)
        if box is None:
            raise
        region = np.ascontiguousarray(face_region(image, box))
        frame = av.VideoFrame.from_ndarray(region, format="rgb24")
        transform, faces = clip_transform([frame], path, template, params, models, backend)
    crop = warp_to_crop(frame, transform.matrix, 256)
    return resize_crop(crop, size), crop, faces


def aligned_frames(
    path: Path,
    size: int,
    params: PreprocessParams,
    models: FaceModels,
    backend: LandmarkBackend,
    max_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """The first ``max_frames`` (default all) frames of a (raw or aligned) video at 25 fps,
    aligned like the training crops, one at a time. Generation needs no more frames than the
    speech has (the emotion video is looped, the pose rows cut): a minute of emotion video
    held 1.2 GB, and it as pose video 1.7 GB, for two seconds of speech."""
    container, stream = open_video(path)
    info = stream_info(stream)
    container.close()

    def frames() -> Iterator[av.VideoFrame]:
        return islice(resample_fps(decode_frames(path), VIDEO_FPS, info.fps), max_frames)

    transform = video_transform(frames(), path, params, models, backend)
    for frame in frames():
        crop = warp_to_crop(frame, transform.matrix, 256)
        yield crop if size == 256 else resize_crop(crop, size)


def video_transform(
    frames: Iterator[av.VideoFrame],
    path: Path,
    params: PreprocessParams,
    models: FaceModels,
    backend: LandmarkBackend,
) -> Similarity:
    """The alignment of the first ``detect_frames`` frames that show a face: an emotion or pose
    video may open without one (an intro, a cut; it was refused). Frames are read, not kept,
    until then (the caller decodes again: a long faceless opening of a 1080p video held would
    be gigabytes); the frames before are crops without a face, left out or interpolated."""
    template = load_template(params.template, 256)
    seen = 0
    while head := list(islice(frames, params.detect_frames)):
        try:
            return clip_transform(head, path, template, params, models, backend)[0]
        except NoFaceError:
            seen += len(head)
    raise NoFaceError(path, f"no face in any of its {seen} frames" if seen else "no frames")


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A 256 crop at the models' size, as the training crops are made."""
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


class CutWatch:
    """A video's frames as they pass (their changes, whether each has a face), for a note where
    it cuts to another shot or face: preprocessing refuses such a clip (``scene_cut``), an
    emotion or pose video fed both shots' faces without a word."""

    def __init__(self) -> None:
        self.changes = FrameChanges()
        self.faces: list[bool] = []

    def see(self, crop: np.ndarray, pose: np.ndarray | None) -> None:
        self.changes.add(thumbnail(crop))
        self.faces.append(pose is not None)

    def note(self, path: Path, what: str) -> str:
        """One line where the frames seen hold a cut ("" where not)."""
        cut = find_cut(self.changes.values, np.array(self.faces, bool))
        if cut is None:
            return ""
        frame, spike = cut
        return (
            f"{path}: the picture changes all at once at {(frame + 1) / VIDEO_FPS:.2f} s "
            f"({spike:.0f}x the change around it: a cut to another shot or face): {what}"
        )


def tracked_crops(
    path: Path,
    max_frames: int,
    pp: PreprocessParams,
    face: FaceModels,
    backend: LandmarkBackend,
    watch: CutWatch | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(256 crop, its head-pose row or None) per frame of a video, the face tracked from frame
    to frame and read as preprocessing reads it (``face_reading``: none where it leaves the
    picture or rolls past upright); ``watch`` sees each."""
    face.reset_tracking()
    for crop in aligned_frames(path, 256, pp, face, backend, max_frames):
        reading = face_reading(crop, face.track(crop), backend)
        pose = None if reading is None else reading[1]
        if watch is not None:
            watch.see(crop, pose)
        yield crop, pose


Tracked = Iterable[tuple[np.ndarray, np.ndarray | None]]  # ``tracked_crops``'s frames


def pose_video_rows(path: Path, crops: Tracked) -> tuple[np.ndarray, int]:
    """(head-pose rows, one per frame of ``path`` read as ``crops``, how many frames had no
    face). A frame without a face keeps its place, interpolated as ``--pose`` rows with NaN
    are: dropping it would play the head motion early and then backwards."""
    rows = [None if pose is None else pose.astype(np.float32) for _, pose in crops]
    found = [row for row in rows if row is not None]
    if not found:
        raise EammError(f"{path}: no face to estimate head pose from")
    gap = np.full_like(found[0], np.nan)
    filled = interpolate_missing_rows(np.stack([gap if row is None else row for row in rows]))
    return filled, len(rows) - len(found)


def emotion_frames(path: Path, size: int, crops: Tracked) -> tuple[np.ndarray, int]:
    """(the emotion video's aligned frames, read as ``crops``, that show a face, how many did
    not). The source is looped, so a frame without a face (the speaker turned away, a cut) is
    left out rather than fed to the emotion network as an empty crop."""
    kept, missing = [], 0
    for crop, pose in crops:
        if pose is None:
            missing += 1
        else:
            kept.append(crop if size == 256 else resize_crop(crop, size))
    if not kept:
        raise EammError(f"{path}: no face in any frame of the emotion video")
    return np.stack(kept), missing


def load_speech(path: Path) -> tuple[np.ndarray, int]:
    """(16 kHz mono samples padded to whole frames, number of frames). A standalone file is cut
    to its declared duration: an M4A's AAC end padding made the video a frame longer than
    the same speech as WAV (``load_audio_16k_mono``'s ``trim_to_duration``)."""
    samples = load_audio_16k_mono(path, trim_to_duration=True)
    if len(samples) == 0 or float(np.sqrt(np.mean(samples**2))) < 1e-4:
        raise SilentAudioError(path, "audio is silent")
    frames = max(1, round(len(samples) / AUDIO_RATE * VIDEO_FPS))
    samples, _ = fit_length(samples, frames * AUDIO_RATE // VIDEO_FPS)
    return samples, frames


def ping_pong(rows: np.ndarray, length: int) -> np.ndarray:
    """EAMM's pose extension: append the time-reverse and tile, then cut to ``length``."""
    if len(rows) >= length:
        return rows[:length]
    cycle = np.concatenate([rows, rows[::-1]]) if len(rows) > 1 else rows
    return (
        np.resize(cycle, (length, *rows.shape[1:]))
        if len(rows) > 1
        else np.repeat(rows, length, axis=0)
    )


class _Smoother:
    """One Euro smoothing of keypoint tensors (T, ...) at a prescale, its state carried from one
    window of frames to the next."""

    def __init__(self, setting: tuple[float, float, float]) -> None:
        mincutoff, beta, self.prescale = setting
        self.filter = OneEuro(mincutoff, beta)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().float().cpu().numpy().reshape(len(x), -1) * self.prescale
        out = self.filter(flat) / self.prescale
        return torch.from_numpy(out.reshape(x.shape)).to(x.device, x.dtype)


def read_emotion(
    models: EammModels,
    transformed: torch.Tensor,
    kp_audio: dict[str, torch.Tensor],
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """Stage 3 on augmented emotion frames (T, 3, H, W) with their audio keypoints,
    ``batch_size`` frames at a time: its outputs (displacement ``value`` / ``jacobian``,
    ``logits``, ``feature``) over all T frames."""
    parts = [
        models.emotion(
            transformed[i : i + batch_size],
            kp_audio["value"][i : i + batch_size],
            kp_audio["jacobian"][i : i + batch_size],
        )
        for i in range(0, len(transformed), batch_size)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _add_emotion(
    models: EammModels,
    driving: dict[str, torch.Tensor],
    kp_audio: dict[str, torch.Tensor],
    transformed: torch.Tensor,
    smoothers: dict[str, _Smoother],
    gp: GenerateParams,
) -> dict[str, torch.Tensor]:
    """``driving`` plus the emotion displacement that ``transformed`` frames give."""
    disp = read_emotion(models, transformed, kp_audio, gp.batch_size)
    device = transformed.device
    idx = torch.tensor(models.emotion_kp, device=device)
    scale = torch.tensor(gp.emotion_scale[: len(idx)], device=device)
    # The displacement is added after the relative normalisation: normalising the sum, as
    # EAMM's --relative would, subtracts a steady expression away with the first frame.
    emotional = {k: v.clone() for k, v in driving.items()}
    for key, extra in (("value", 1), ("jacobian", 2)):
        emotional[key][:, idx] += scale.view(1, -1, *([1] * extra)) * smoothers[key](disp[key])
    return emotional


def relative_keypoints(
    driving: dict[str, torch.Tensor],
    first: dict[str, torch.Tensor],
    kp_source: dict[str, torch.Tensor],
    relative_jacobian: bool,
) -> dict[str, torch.Tensor]:
    """FOMM's relative mode: ``driving``'s motion since ``first`` applied to the source's
    keypoints (a constant offset of the audio branch cancels out); the source's jacobians, or
    with ``relative_jacobian`` theirs times the driving jacobians' change since ``first``."""
    jacobian = kp_source["jacobian"].expand_as(driving["jacobian"])
    if relative_jacobian:
        jacobian = driving["jacobian"] @ torch.inverse(first["jacobian"]) @ jacobian
    return {"value": driving["value"] - first["value"] + kp_source["value"], "jacobian": jacobian}


@torch.no_grad()
def _window_stream(
    models: EammModels,
    source: torch.Tensor,
    windows: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    gp: GenerateParams,
) -> Iterator[tuple[dict[str, torch.Tensor], Iterator[dict[str, torch.Tensor]]]]:
    """Per window of (mfcc, pose, transformed) frames: the audio branch's keypoints as it
    made them (unsmoothed) and the window's rendered batches of frames per variant. The LSTM
    state, the One Euro filters and relative mode's first-frame keypoints carry over between
    windows, so the frames are those of one long window while memory holds one window."""
    kp_source = models.kp_detector(source)
    audio_smoothers = {k: _Smoother(gp.audio_kp_smoothing) for k in KP_KEYS}
    emotion_smoothers = {k: _Smoother(gp.emotion_smoothing) for k in KP_KEYS}
    state, first = None, None
    for mfcc, pose, transformed in windows:
        feature, state = models.audio_net.forward_from(
            source, mfcc[None], pose[None], gp.audio_weight, state
        )
        kp_audio = models.audio_head(feature[0])
        driving = {k: audio_smoothers[k](kp_audio[k]) for k in KP_KEYS}
        if gp.relative:
            if first is None:
                first = {k: v[:1].clone() for k, v in driving.items()}
            driving = relative_keypoints(driving, first, kp_source, gp.relative_jacobian)
        variants = {"neutral": driving}
        if transformed is not None and models.emotion is not None:
            variants["emotion"] = _add_emotion(
                models, driving, kp_audio, transformed, emotion_smoothers, gp
            )
        batches = [
            render_batches(models, source, kp_source, kp, gp.batch_size) for kp in variants.values()
        ]
        frames = (dict(zip(variants, b, strict=True)) for b in zip(*batches, strict=True))
        yield kp_audio, frames


@torch.no_grad()
def animate_stream(
    models: EammModels,
    source: torch.Tensor,
    windows: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    gp: GenerateParams,
) -> Iterator[dict[str, torch.Tensor]]:
    """``animate`` over consecutive windows of (mfcc, pose, transformed) frames, yielding a
    batch of frames at a time, as one long window would give them (``_window_stream``)."""
    for _, frames in _window_stream(models, source, windows, gp):
        yield from frames


@torch.no_grad()
def animate(
    models: EammModels,
    source: torch.Tensor,
    mfcc: torch.Tensor,
    pose: torch.Tensor,
    transformed: torch.Tensor | None,
    gp: GenerateParams,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Neutral and (with ``transformed``) emotion frames (T, 3, H, W) for one source image, all
    T frames as one window, and the audio branch's keypoints (T, K, ...) that drove them,
    unsmoothed (evaluation scores both, from one pass of the audio network)."""
    [(kp_audio, frames)] = _window_stream(models, source, [(mfcc, pose, transformed)], gp)
    batches = list(frames)
    return {name: torch.cat([b[name] for b in batches]) for name in batches[0]}, kp_audio


def render_batches(
    models: EammModels, source: torch.Tensor, kp_source: dict, kp: dict, batch_size: int
) -> Iterator[torch.Tensor]:
    """``render``'s frames, ``batch_size`` at a time (a compiled generator gets every batch
    padded to its one shape by repeating the last frame's keypoints; the padding is dropped)."""
    t = len(kp["value"])
    for i in range(0, t, batch_size):
        n = min(batch_size, t - i)
        drv_kp = {k: v[i : i + n] for k, v in kp.items()}
        if models.fixed_batch is not None and n < models.fixed_batch:
            pad = models.fixed_batch - n
            drv_kp = {
                k: torch.cat([v, v[-1:].expand(pad, *v.shape[1:])]) for k, v in drv_kp.items()
            }
        m = len(drv_kp["value"])
        src_kp = {k: v.expand(m, *v.shape[1:]) for k, v in kp_source.items()}
        with _render_context(models, source.device):
            frames = models.generator(
                source.expand(m, -1, -1, -1), kp_source=src_kp, kp_driving=drv_kp
            )["prediction"]
        yield frames[:n].float()  # the same tensor at the defaults


def render(
    models: EammModels, source: torch.Tensor, kp_source: dict, kp: dict, batch_size: int
) -> torch.Tensor:
    """Frames (T, 3, H, W) of ``source`` moved to the driving keypoints ``kp`` (T, K, ...)."""
    return torch.cat(list(render_batches(models, source, kp_source, kp, batch_size)))


@torch.no_grad()
def reconstruct(
    models: EammModels, source: torch.Tensor, driving: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """FOMM reconstruction: ``source`` (1, 3, H, W) moved to the keypoints the keypoint detector
    finds on the real ``driving`` frames (T, 3, H, W). The upper bound of what the audio branch
    can reach with this generator: it measures the FOMM stage alone."""
    kp = detect_keypoints(models, driving, batch_size)
    return render(models, source, models.kp_detector(source), kp, batch_size)


@torch.no_grad()
def detect_keypoints(
    models: EammModels, frames: torch.Tensor, batch_size: int
) -> dict[str, torch.Tensor]:
    """The keypoint detector's keypoints of real frames (T, 3, H, W), ``batch_size`` at a time."""
    parts = [
        models.kp_detector(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in KP_KEYS}


class EmotionSource:
    """The aligned emotion video looped to ``num_frames`` and augmented a window at a time into
    exactly the frames ``emotion_augment`` gives for the whole loop, whatever the windows.

    ``emotion_augment`` draws the mouth noise of every frame, then one flip and one rotation,
    then each frame's perspective. Here one copy of the seeded generator draws the noise window
    by window; a second one first skips all of it (drawn and dropped, window by window), then
    gives the flip and rotation (replayed for every window) and the perspectives. Windows of a
    multiple of 4 frames keep the noise aligned to numpy's 4-byte draws of uint8 values."""

    def __init__(self, frames: np.ndarray, seed: int, num_frames: int) -> None:
        self.frames = frames
        self._noise = np.random.default_rng(seed)
        self._geometry = np.random.default_rng(seed)
        for start in range(0, num_frames, WINDOW_FRAMES):
            mouth_noise(self.looped(start, min(num_frames, start + WINDOW_FRAMES)), self._geometry)
        self._perspective: np.random.Generator | None = None

    def looped(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` of the video repeated end to end."""
        return self.frames[np.arange(start, stop) % len(self.frames)]

    def augmented(self, start: int, stop: int) -> np.ndarray:
        """The augmented frames ``start:stop``; windows must come in order."""
        clip = mouth_noise(self.looped(start, stop), self._noise)
        geometry = copy.deepcopy(self._geometry)
        clip = random_rotation(random_flip(clip, geometry), geometry, AUGMENT_ROTATION)
        if self._perspective is None:
            self._perspective = geometry
        return random_perspective(clip, self._perspective, AUGMENT_SHIFT, AUGMENT_EXPAND)


VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")  # what the MP4 muxer's options (faststart) fit


def load_pose(path: Path) -> tuple[np.ndarray, int]:
    """(head-pose rows (n, 6) float32, how many were NaN) from a ``.npy`` of (n, 6) or (n, 7)
    rows. NaN rows (frames without a face, as preprocessing writes them) are interpolated between
    the valid rows around them, held at the ends (issue #15: a gap's head moves on instead of
    jumping at its middle); anything else is refused in one line."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
        if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
            # np.load would take it for a pickle and advise loading it unsafely
            raise EammError(f"{path}: pose rows must be a .npy array; this is not a .npy file")
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise EammError(f"{path}: cannot read pose rows ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, np.ndarray):
        loaded.close()
        raise EammError(f"{path}: pose rows must be one .npy array, not an .npz archive")
    if loaded.ndim != 2 or loaded.shape[1] not in (6, 7) or not len(loaded):
        raise EammError(f"{path}: pose rows must have shape (n, 6) or (n, 7), got {loaded.shape}")
    if not np.issubdtype(loaded.dtype, np.floating):
        raise EammError(f"{path}: pose rows must be floating point, got {loaded.dtype}")
    rows = loaded[:, :6].astype(np.float64)  # checked before float32 (1e300 would overflow)
    valid = np.isfinite(rows).all(axis=1)
    missing = int((~valid).sum())
    if missing == len(rows):
        raise EammError(
            f"{path}: all {missing} pose rows are NaN or infinite (no face in any frame)"
        )
    if not pose_in_range(rows[valid]):
        # rows from another tool or unit: a garbage head, not an error, would come out
        (a_lo, a_hi), (s_lo, s_hi), (t_lo, t_hi) = POSE_RANGES
        raise EammError(
            f"{path}: pose rows out of range (columns yaw, pitch, roll in degrees within "
            f"{a_lo:g}..{a_hi:g}, scale {s_lo:g}..{s_hi:g}, tx and ty {t_lo:g}..{t_hi:g}, as "
            "preprocessing writes them: scale ~5e-4, tx and ty in pixels of a 120 face box)"
        )
    return interpolate_missing_rows(rows.astype(np.float32)), missing


# What a pose row can hold (``eamm.face.pose.pose_row``): angles in degrees; the scale of an
# eye distance of 0.2 to 1800 px in the 256 crop; tx, ty within two face boxes (120 px) of it.
POSE_RANGES = ((-180.0, 180.0), (1e-6, 1e-2), (-240.0, 360.0))


def pose_in_range(rows: np.ndarray) -> bool:
    """Whether finite pose rows (n, 6) lie in ``POSE_RANGES``."""
    (a_lo, a_hi), (s_lo, s_hi), (t_lo, t_hi) = POSE_RANGES
    angles, scale, shift = rows[:, :3], rows[:, 3], rows[:, 4:6]
    return bool(
        ((angles >= a_lo) & (angles <= a_hi)).all()
        and ((scale >= s_lo) & (scale <= s_hi)).all()
        and ((shift >= t_lo) & (shift <= t_hi)).all()
    )


@dataclass
class GenerationResult:
    emotion: Path | None
    neutral: Path
    compare: Path | None
    num_frames: int
    emotion_kp: list[int]
    notes: list[str] = field(default_factory=list)  # one line each: fallbacks, repaired input


def _writers(
    stack: ExitStack, paths: dict[str, Path], size: int, wav: Path, crf: int
) -> dict[str, VideoWriter]:
    """One encoder per output video, all open at once so frames stream to them."""
    return {
        name: stack.enter_context(
            VideoWriter(
                path,
                size * (3 if name == "compare" else 1),
                size,
                VIDEO_FPS,
                crf=crf,
                audio_path=wav,
                audio_rate=AUDIO_RATE,
                audio_channels=1,
            )
        )
        for name, path in paths.items()
    }


def generate(
    photo: str | Path,
    audio: str | Path,
    emotion_video: str | Path | None,
    out: str | Path,
    checkpoints: str | Path = "models",
    pose: str | Path | None = None,
    pose_video: str | Path | None = None,
    params: GenerateParams | None = None,
    preprocess: PreprocessParams | None = None,
    fallback_model: dict | None = None,
) -> GenerationResult:
    """Write the emotion, neutral and comparison videos (or only ``out``, neutral, without an
    emotion source: a note says so); one-line errors name the bad input."""
    gp = params or GenerateParams()
    pp = preprocess or PreprocessParams()
    photo, audio, out = Path(photo), Path(audio), Path(out)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        # else ffmpeg fails after the whole generation ("ffmpeg exited while frames were being
        # written") for a name without one, or writes another container for .avi
        raise EammError(
            f"{out}: the videos are MP4 (H.264 + AAC); name the output "
            f"{', '.join(VIDEO_SUFFIXES)}, not '{out.suffix or 'no extension'}'"
        )
    inputs = {"--photo": photo, "--audio": audio, "--emotion-video": emotion_video}
    refuse_overwriting_inputs(out, {**inputs, "--pose": pose, "--pose-video": pose_video})
    require_short_names(out)
    # one run per video written (--out and its _neutral and _compare): a second stops at once
    # (one whose --out was another's _neutral removed its staged video); staged videos beside
    # them are a killed run's
    written = sorted(output_paths(out, emotion=True).values())
    with contextlib.ExitStack() as held:
        for path in written:
            held.enter_context(output_lock(path, "generation"))
        remove_leftovers(written)
        return _generate(
            photo, audio, emotion_video, out, checkpoints, pose, pose_video, gp, pp, fallback_model
        )


def refuse_overwriting_inputs(out: Path, inputs: dict[str, str | Path | None]) -> None:
    """One line, before any work, where a video this run writes is one of its inputs (``--out
    x.mp4 --emotion-video x.mp4`` replaced the emotion video with the result)."""
    writes = output_paths(out, emotion=True).values()
    for option, path in inputs.items():
        for written in writes if path is not None else ():
            same = os.path.realpath(path) == os.path.realpath(written)
            linked = written.exists() and Path(path).exists() and os.path.samefile(path, written)
            if same or linked:  # a symbolic or a hard link
                raise EammError(
                    f"{path}: {option} is a video this run writes ({written}); name another --out"
                )


# What staging adds to an output's name: ``.<name>.`` + mkstemp's 8 characters + the suffix
STAGED_NAME_EXTRA = len("..") + 8 + len(".partial.mp4")


def require_short_names(out: Path) -> None:
    """One line now where a name this run writes (``<out>_compare.mp4`` or its staged copy)
    is longer than the file system takes: a 250-byte ``--out`` failed after the generation with
    "OSError: [Errno 36] File name too long"."""
    folder = next((p for p in out.parents if p.is_dir()), Path("."))
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max(output_paths(out, emotion=True).values(), key=lambda p: len(os.fsencode(p.name)))
    if len(os.fsencode(longest.name)) + STAGED_NAME_EXTRA > limit:
        raise EammError(
            f"{out}: too long a name (--out): {longest.name} and its staged copy need "
            f"{len(os.fsencode(longest.name)) + STAGED_NAME_EXTRA} bytes, the file system takes "
            f"{limit}"
        )


def output_paths(out: Path, emotion: bool) -> dict[str, Path]:
    """The videos one run writes: ``out`` alone without an emotion source."""
    if not emotion:
        return {"neutral": out}
    return {
        "emotion": out,
        "neutral": out.with_name(f"{out.stem}_neutral{out.suffix}"),
        "compare": out.with_name(f"{out.stem}_compare{out.suffix}"),
    }


def remove_stale_siblings(out: Path) -> list[str]:
    """Remove an earlier emotion run's ``<out>_neutral`` and ``<out>_compare`` videos once this
    run's neutral ``out`` is in place: this run writes neither, and theirs, of other speech and
    length, passed for its own. One note naming what went, or none."""
    written = output_paths(out, emotion=False).values()
    stale = [
        path
        for path in output_paths(out, emotion=True).values()
        if path not in written and (path.is_file() or path.is_symlink())
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    if not stale:
        return []
    names = " and ".join(str(path) for path in stale)
    return [f"{out}: removed {names} of an earlier run (this run writes no emotion video)"]


def _generate(
    photo: Path,
    audio: Path,
    emotion_video: str | Path | None,
    out: Path,
    checkpoints: str | Path,
    pose: str | Path | None,
    pose_video: str | Path | None,
    gp: GenerateParams,
    pp: PreprocessParams,
    fallback_model: dict | None,
) -> GenerationResult:
    notes: list[str] = []
    if pose is not None:
        rows, missing = load_pose(Path(pose))
        if missing:
            notes.append(
                f"{pose}: {missing} of {len(rows)} pose rows are NaN or infinite (frames "
                "without a face), "
                "interpolated between the valid rows around them (held at the ends)"
            )
    device = pick_device(gp.device)
    if gp.precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        notes.append(
            "generate.precision bf16 on a CPU without bf16 instructions: emulated, "
            "about 30x slower than fp32 here"
        )
    nets = load_models(checkpoints, device, gp, fallback_model)
    notes.extend(nets.notes)
    size = nets.image_size
    samples, t = load_speech(audio)
    if emotion_video is None:
        notes.append(f"{out}: the neutral video (no emotion video given)")
    elif nets.emotion is None:
        emotion_video = None
        notes.append(
            f"{out}: the neutral video (no emotion checkpoint in {Path(checkpoints) / 'emotion'})"
        )
    face = FaceModels.from_params(pp.landmarks)
    backend = make_backend(pp.landmarks.backend, pp.landmarks.fan_weights_dir)
    try:
        source, crop256, faces = align_photo(photo, size, pp, face, backend)
        if faces > 1:
            notes.append(
                f"{photo}: {faces} faces; animating the largest "
                "(preprocess.on_multiple_faces: fail refuses such photos)"
            )
        if pose is None and pose_video is not None:
            watch = CutWatch()
            crops = tracked_crops(Path(pose_video), t, pp, face, backend, watch)
            rows, missing = pose_video_rows(Path(pose_video), crops)
            if cut := watch.note(pose_video, "the head pose follows both shots"):
                notes.append(cut)
            if missing:
                notes.append(
                    f"{pose_video}: {missing} of {len(rows)} frames without a face (or with "
                    f"one leaving the picture or rolled past {MAX_ROLL:g} degrees), their "
                    "pose rows interpolated between the valid rows around them (held at the ends)"
                )
        elif pose is None:
            mesh = face.mesh(crop256)
            if mesh is None:
                raise EammError(f"{photo}: no face mesh for the still pose")
            rows = pose_row(mesh)[None]
        emotion = None
        if emotion_video is not None:
            watch = CutWatch()
            crops = tracked_crops(Path(emotion_video), t, pp, face, backend, watch)
            frames, missing = emotion_frames(Path(emotion_video), size, crops)
            if cut := watch.note(emotion_video, "the emotion source holds both shots' faces"):
                notes.append(cut)
            if missing:
                notes.append(
                    f"{emotion_video}: {missing} of {missing + len(frames)} frames without a "
                    f"face (or with one leaving the picture or rolled past {MAX_ROLL:g} "
                    "degrees), left out of the emotion source"
                )
            emotion = EmotionSource(frames, gp.seed, t)
    finally:
        face.close()
    rows = rows[:, :6]
    given = pose if pose is not None else pose_video
    if given is not None and len(rows) < t:
        notes.append(
            f"{given}: {len(rows)} pose rows for {t} frames, played forwards and backwards to "
            "fill them (EAMM's extension)"
        )
    rows = rows[:t]  # the One Euro filter is causal: smoothing the rows played is enough
    if len(rows) > 1:
        rows = one_euro(rows, *gp.pose_smoothing).astype(np.float32)
    poses = ping_pong(rows, t)
    end_pad = end_pad_for_frames(len(samples), t)

    def windows() -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        for start in range(0, t, WINDOW_FRAMES):
            stop = min(t, start + WINDOW_FRAMES)
            mfcc = mfcc_window_range(samples, end_pad, start, stop)[:, :, 1:]
            transformed = (
                frames_to_tensor(emotion.augmented(start, stop), device)
                if emotion is not None
                else None
            )
            yield (
                torch.from_numpy(np.ascontiguousarray(mfcc)).to(device),
                torch.from_numpy(poses[start:stop]).to(device),
                transformed,
            )

    paths = output_paths(out, emotion is not None)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the videos replace the old ones together: a failure while writing one leaves all old ones;
    # without an emotion video, an earlier run's other two go once the new ``out`` is in place
    with replacing_all(paths) as staged, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        wav = write_wav_s16(samples, Path(tmp) / "speech.wav")
        writers = _writers(stack, staged, size, wav, gp.crf)
        done = 0
        source_tensor = frames_to_tensor(source, device)[None]
        for batch in animate_stream(nets, source_tensor, windows(), gp):
            videos = {k: tensor_to_frames(v) for k, v in batch.items()}
            n = len(videos["neutral"])
            if emotion is not None:
                reference = emotion.looped(done, done + n)
                videos["compare"] = np.concatenate(
                    [reference, videos["neutral"], videos["emotion"]], 2
                )
            for name, writer in writers.items():
                for frame in videos[name]:
                    writer.write(frame)
            done += n
    if emotion is None:
        notes.extend(remove_stale_siblings(out))
    return GenerationResult(
        emotion=paths.get("emotion"),
        neutral=paths["neutral"],
        compare=paths.get("compare"),
        num_frames=t,
        emotion_kp=nets.emotion_kp,
        notes=notes,
    )
