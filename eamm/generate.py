"""Emotional talking-face generation (reference section 4), RGB throughout, CPU or GPU.

photo + speech + emotion video (+ head pose) -> ``<out>.mp4`` (emotion), ``<out>_neutral.mp4``
and ``<out>_compare.mp4`` (aligned emotion video | neutral | emotion), 25 fps, audio muxed.
Differences from EAMM's demo: the photo is RGB (EAMM fed BGR), the emotion-video augmentation is
seeded (same inputs, same video), frames are rendered in batches, the output is always 25 fps.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from eamm.audio import (
    end_pad_for_frames,
    fit_length,
    load_audio_16k_mono,
    mfcc_windows,
    write_wav_s16,
)
from eamm.config import GenerateParams, PreprocessParams
from eamm.errors import EammError, MediaError
from eamm.face.landmarks import FaceModels, LandmarkBackend, make_backend
from eamm.face.pose import pose_row
from eamm.face.template import load_template
from eamm.media import VideoWriter
from eamm.models import (
    AudioKeypointHead,
    AudioToFacialDynamics,
    EmotionDisplacement,
    KPDetector,
    OcclusionAwareGenerator,
)
from eamm.preprocess.clip import clip_transform
from eamm.smoothing import one_euro
from eamm.train.augment import emotion_augment
from eamm.train.checkpoint import load_checkpoint
from eamm.train.loop import pick_device
from eamm.video.decode import decode_frames, open_video, resample_fps, stream_info
from eamm.video.warp import warp_to_crop

FPS = 25
SAMPLE_RATE = 16000


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


def _sizes(state: dict, fallback_model: dict | None) -> dict:
    model = state.get("params", {}).get("model", {})
    profiles = model.get("profiles") or (fallback_model or {}).get("profiles") or {}
    name = model.get("profile")
    if name not in profiles:
        raise EammError(f"checkpoint trained with model profile '{name}', which is not defined")
    return profiles[name]


def load_models(
    checkpoints: str | Path,
    device: torch.device,
    generator_from: str = "fomm",
    fallback_model: dict | None = None,
) -> EammModels:
    """Networks from ``<checkpoints>/{fomm,a2fd_finetune,emotion}/checkpoint.pt``."""
    from eamm.train.build import build_emotion_net, build_networks

    root = Path(checkpoints)
    fomm = load_checkpoint(root / "fomm" / "checkpoint.pt", "cpu")
    audio_path = root / "a2fd_finetune" / "checkpoint.pt"
    if not audio_path.is_file():
        audio_path = root / "a2fd" / "checkpoint.pt"
    audio = load_checkpoint(audio_path, "cpu")
    emotion_path = root / "emotion" / "checkpoint.pt"
    emotion = load_checkpoint(emotion_path, "cpu") if emotion_path.is_file() else None
    sizes = _sizes(fomm, fallback_model)
    nets = build_networks(sizes)
    sources = {"kp_detector": fomm, "audio_feature": audio, "kp_detector_a": audio}
    sources["generator"] = (
        audio if generator_from == "finetune" and "generator" in audio["models"] else fomm
    )
    for name, state in sources.items():
        try:
            nets[name].load_state_dict(state["models"][name])
        except (KeyError, RuntimeError) as err:
            raise EammError(
                f"{root}: checkpoint for '{name}' is missing or does not match the model "
                f"({str(err).splitlines()[0][:160]})"
            ) from None
    emotion_net, emotion_kp = None, []
    if emotion is not None:
        emotion_kp = list(emotion["emotion_kp"])
        emotion_net = build_emotion_net(sizes, len(emotion_kp))
        try:
            emotion_net.load_state_dict(emotion["models"]["emo_detector"])
        except (KeyError, RuntimeError) as err:
            raise EammError(f"{emotion_path}: emotion checkpoint does not match ({err})") from None
    for net in [*nets.values(), emotion_net]:
        if net is not None:
            net.to(device).eval()
    return EammModels(
        nets["kp_detector"],
        nets["generator"],
        nets["audio_feature"],
        nets["kp_detector_a"],
        emotion_net,
        emotion_kp,
        sizes["image_size"],
    )


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
    """(aligned crop at ``size``, its 256-px crop for pose) of a photo of any size."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(path, "unreadable image")
    frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), format="rgb24")
    template = load_template(params.template, 256)
    transform, _ = clip_transform([frame], path, template, params, models, backend)
    crop = warp_to_crop(frame, transform.matrix, 256)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), crop


def aligned_video(
    path: Path, size: int, params: PreprocessParams, models: FaceModels, backend: LandmarkBackend
) -> np.ndarray:
    """All frames of a (raw or aligned) video at 25 fps, aligned like the training crops."""
    container, stream = open_video(path)
    info = stream_info(stream)
    container.close()
    frames = resample_fps(decode_frames(path), FPS, info.fps)
    head = list(islice(frames, params.detect_frames))
    template = load_template(params.template, 256)
    transform, _ = clip_transform(head, path, template, params, models, backend)
    crops = [warp_to_crop(f, transform.matrix, 256) for f in [*head, *frames]]
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def load_speech(path: Path) -> tuple[np.ndarray, int]:
    """(16 kHz mono samples padded to whole frames, number of frames)."""
    samples = load_audio_16k_mono(path)
    if len(samples) == 0 or float(np.sqrt(np.mean(samples**2))) < 1e-4:
        raise SilentAudioError(path, "audio is silent")
    frames = max(1, round(len(samples) / SAMPLE_RATE * FPS))
    samples, _ = fit_length(samples, frames * SAMPLE_RATE // FPS)
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


def _smooth(x: torch.Tensor, setting: tuple[float, float, float]) -> torch.Tensor:
    mincutoff, beta, prescale = setting
    flat = x.detach().float().cpu().numpy().reshape(len(x), -1) * prescale
    out = one_euro(flat, mincutoff, beta) / prescale
    return torch.from_numpy(out.reshape(x.shape)).to(x.device, x.dtype)


@torch.no_grad()
def animate(
    models: EammModels,
    source: torch.Tensor,
    mfcc: torch.Tensor,
    pose: torch.Tensor,
    transformed: torch.Tensor | None,
    gp: GenerateParams,
) -> dict[str, torch.Tensor]:
    """Neutral and (with ``transformed``) emotion frames (T, 3, H, W) for one source image."""
    kp_source = models.kp_detector(source)
    feature = models.audio_net(source, mfcc[None], pose[None], audio_weight=gp.audio_weight)[0]
    kp_audio = models.audio_head(feature)
    driving = {
        "value": _smooth(kp_audio["value"], gp.audio_kp_smoothing),
        "jacobian": _smooth(kp_audio["jacobian"], gp.audio_kp_smoothing),
    }
    if gp.relative:
        # FOMM's relative mode: the audio keypoints' motion since the first frame, applied to
        # the source's keypoints (a constant offset of the audio branch cancels out).
        jacobian = kp_source["jacobian"].expand_as(driving["jacobian"])
        if gp.relative_jacobian:
            jacobian = driving["jacobian"] @ torch.inverse(driving["jacobian"][:1]) @ jacobian
        driving = {
            "value": driving["value"] - driving["value"][:1] + kp_source["value"],
            "jacobian": jacobian,
        }
    variants = {"neutral": driving}
    if transformed is not None and models.emotion is not None:
        parts = [
            models.emotion(
                transformed[i : i + gp.batch_size],
                kp_audio["value"][i : i + gp.batch_size],
                kp_audio["jacobian"][i : i + gp.batch_size],
            )
            for i in range(0, len(transformed), gp.batch_size)
        ]
        disp = {k: torch.cat([p[k] for p in parts]) for k in ("value", "jacobian")}
        idx = torch.tensor(models.emotion_kp, device=source.device)
        scale = torch.tensor(gp.emotion_scale[: len(idx)], device=source.device)
        # The displacement is added after the relative normalisation: normalising the sum,
        # as EAMM's --relative would, subtracts a steady expression away with the first frame.
        emotional = {k: v.clone() for k, v in driving.items()}
        for key, extra in (("value", 1), ("jacobian", 2)):
            delta = _smooth(disp[key], gp.emotion_smoothing)
            emotional[key][:, idx] += scale.view(1, -1, *([1] * extra)) * delta
        variants["emotion"] = emotional
    return {
        name: render(models, source, kp_source, kp, gp.batch_size) for name, kp in variants.items()
    }


def render(
    models: EammModels, source: torch.Tensor, kp_source: dict, kp: dict, batch_size: int
) -> torch.Tensor:
    """Frames (T, 3, H, W) of ``source`` moved to the driving keypoints ``kp`` (T, K, ...)."""
    frames = []
    t = len(kp["value"])
    for i in range(0, t, batch_size):
        n = min(batch_size, t - i)
        src_kp = {k: v.expand(n, *v.shape[1:]) for k, v in kp_source.items()}
        drv_kp = {k: v[i : i + n] for k, v in kp.items()}
        frames.append(
            models.generator(source.expand(n, -1, -1, -1), kp_source=src_kp, kp_driving=drv_kp)[
                "prediction"
            ]
        )
    return torch.cat(frames)


@torch.no_grad()
def reconstruct(
    models: EammModels, source: torch.Tensor, driving: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """FOMM reconstruction: ``source`` (1, 3, H, W) moved to the keypoints the keypoint detector
    finds on the real ``driving`` frames (T, 3, H, W). The upper bound of what the audio branch
    can reach with this generator: it measures the FOMM stage alone."""
    kp_source = models.kp_detector(source)
    steps = range(0, len(driving), batch_size)
    parts = [models.kp_detector(driving[i : i + batch_size]) for i in steps]
    kp = {k: torch.cat([p[k] for p in parts]) for k in ("value", "jacobian")}
    return render(models, source, kp_source, kp, batch_size)


@dataclass
class GenerationResult:
    emotion: Path | None
    neutral: Path
    compare: Path | None
    num_frames: int
    emotion_kp: list[int]


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
    """Write the emotion, neutral and comparison videos; one-line errors name the bad input."""
    gp = params or GenerateParams()
    pp = preprocess or PreprocessParams()
    photo, audio, out = Path(photo), Path(audio), Path(out)
    device = pick_device(gp.device)
    nets = load_models(checkpoints, device, gp.generator_from, fallback_model)
    size = nets.image_size
    samples, t = load_speech(audio)
    face = FaceModels(pp.landmarks.min_detection_confidence)
    backend = make_backend(pp.landmarks.backend, pp.landmarks.fan_weights_dir)
    try:
        source, crop256 = align_photo(photo, size, pp, face, backend)
        if pose is not None:
            loaded = np.load(pose)
            rows = loaded.astype(np.float32).reshape(-1, loaded.shape[-1])
        elif pose_video is not None:
            frames = aligned_video(Path(pose_video), 256, pp, face, backend)
            face.reset_tracking()
            meshes = [face.track(f) for f in frames]
            rows = np.stack([pose_row(m) for m in meshes if m is not None])
            if not len(rows):
                raise EammError(f"{pose_video}: no face to estimate head pose from")
        else:
            mesh = face.mesh(crop256)
            if mesh is None:
                raise EammError(f"{photo}: no face mesh for the still pose")
            rows = pose_row(mesh)[None]
        emotion_frames = (
            aligned_video(Path(emotion_video), size, pp, face, backend)
            if emotion_video is not None
            else None
        )
    finally:
        face.close()
    rows = rows[:, :6]
    if len(rows) > 1:
        rows = one_euro(rows, *gp.pose_smoothing).astype(np.float32)
    poses = ping_pong(rows, t)
    mfcc = mfcc_windows(samples, end_pad_for_frames(len(samples), t))[:t, :, 1:]
    transformed = None
    if emotion_frames is not None:
        looped = np.resize(emotion_frames, (t, *emotion_frames.shape[1:]))
        rng = np.random.default_rng(gp.seed)
        transformed = frames_to_tensor(emotion_augment(looped, rng), device)
    result = animate(
        nets,
        frames_to_tensor(source, device)[None],
        torch.from_numpy(np.ascontiguousarray(mfcc)).to(device),
        torch.from_numpy(poses).to(device),
        transformed,
        gp,
    )
    videos = {k: tensor_to_frames(v) for k, v in result.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "emotion": out,
        "neutral": out.with_name(f"{out.stem}_neutral{out.suffix}"),
        "compare": out.with_name(f"{out.stem}_compare{out.suffix}"),
    }
    if "emotion" in videos:
        reference = np.resize(emotion_frames, (t, *emotion_frames.shape[1:]))
        videos["compare"] = np.concatenate([reference, videos["neutral"], videos["emotion"]], 2)
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav_s16(samples, Path(tmp) / "speech.wav")
        for name, frames in videos.items():
            with VideoWriter(
                paths[name],
                frames.shape[2],
                frames.shape[1],
                FPS,
                crf=gp.crf,
                audio_path=wav,
                audio_rate=SAMPLE_RATE,
                audio_channels=1,
            ) as writer:
                for frame in frames:
                    writer.write(frame)
    return GenerationResult(
        emotion=paths["emotion"] if "emotion" in videos else None,
        neutral=paths["neutral"],
        compare=paths["compare"] if "compare" in videos else None,
        num_frames=t,
        emotion_kp=nets.emotion_kp,
    )
