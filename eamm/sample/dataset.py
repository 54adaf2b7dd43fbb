"""Plan and write the bundled sample dataset in the real MEAD and LRW layouts.

MEAD: ``mead/<speaker>/video/front/<emotion>/level_<n>/<utt>.mp4`` (16:9, 30 fps, AAC 48 kHz
stereo) with ``mead/<speaker>/audio/<emotion>/level_<n>/<utt>.m4a``. LRW:
``lrw/lipread_mp4/<WORD>/<split>/<WORD>_<nnnnn>.mp4`` (256x256, 25 fps, 29 frames, AAC 16 kHz mono).
Every clip has its own seed derived from the dataset seed and the clip's path, so any one clip
can be regenerated alone and the result does not depend on processing order.

What a clip carries: synthetic speech whose vowels drive the mouth (opening and lip width), the
MEAD emotion's expression at its level (``eamm.sample.expressions``), and head motion (roll,
shift, scale) whose plan ``head_motion`` returns, on one of the identities of
``eamm.sample.face.IDENTITIES`` chosen per speaker (MEAD) or per split (LRW) in params.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eamm.atomic import check_replaceable, replacing
from eamm.config import MEAD_EMOTIONS, SampleDataParams
from eamm.media.encode import PyAVVideoWriter, encode_audio_inprocess
from eamm.sample.expressions import expression
from eamm.sample.face import IDENTITIES, Framing, HeadPose, rig
from eamm.sample.voice import Speech, synth_speech

# Head-motion style per emotion: (roll bias deg, nod bias in eye distances, motion gain).
EMOTION_STYLE = {
    "angry": (2.0, -0.03, 1.3),
    "contempt": (-4.0, 0.0, 0.8),
    "disgusted": (3.0, 0.04, 1.0),
    "fear": (0.0, -0.06, 1.3),
    "happy": (-2.0, -0.02, 1.2),
    "neutral": (0.0, 0.0, 0.8),
    "sad": (1.0, 0.1, 0.6),
    "surprised": (0.0, -0.08, 1.1),
}
ROLL_DEG = 5.0  # head roll amplitude at motion gain 1
SHIFT_U = 0.2  # head shift amplitude, eye distances
SCALE = 0.04  # head scale amplitude
PORTRAIT_SIZE = 512


@dataclass(frozen=True)
class SampleClip:
    """One clip to generate; paths are relative to the output root."""

    dataset: str
    video: str
    audio: str | None
    speaker: str
    emotion: str
    level: int
    num_frames: int
    fps: int
    width: int
    height: int
    audio_rate: int
    audio_channels: int
    crf: int
    identity: str
    seed: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def clip_seed(seed: int, key: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode())]).generate_state(1)[0])


def _check_identity(name: str, where: str) -> str:
    if name not in IDENTITIES:
        raise ValueError(
            f"sample_data.{where}: unknown identity {name!r}; known: {list(IDENTITIES)}"
        )
    return name


def mead_clip_specs(params: SampleDataParams) -> list[tuple[str, int, str]]:
    """(emotion, level, utterance) of every MEAD clip per speaker."""
    mead = params.mead
    if mead.clips is not None:
        return [(c.emotion, c.level, c.utterance) for c in mead.clips]
    specs = []
    for emotion in MEAD_EMOTIONS:
        for level in (1,) if emotion == "neutral" else (1, 2, 3):
            for k in range(mead.utterances):
                specs.append((emotion, level, f"{k + 1:03d}"))
    return specs


def plan(params: SampleDataParams) -> list[SampleClip]:
    clips: list[SampleClip] = []
    mead = params.mead
    for speaker, identity in mead.speakers.items():
        _check_identity(identity, f"mead.speakers.{speaker}")
        for emotion, level, utterance in mead_clip_specs(params):
            rel = f"{speaker}/video/front/{emotion}/level_{level}/{utterance}.mp4"
            seed = clip_seed(params.seed, rel)
            duration = np.random.default_rng(seed).uniform(*mead.duration_s)
            clips.append(
                SampleClip(
                    dataset="mead",
                    video=f"mead/{rel}",
                    audio=f"mead/{speaker}/audio/{emotion}/level_{level}/{utterance}.m4a",
                    speaker=speaker,
                    emotion=emotion,
                    level=level,
                    num_frames=round(duration * mead.fps),
                    fps=mead.fps,
                    width=mead.width,
                    height=mead.height,
                    audio_rate=mead.audio_rate,
                    audio_channels=2,
                    crf=mead.crf,
                    identity=identity,
                    seed=seed,
                )
            )
    lrw = params.lrw
    number = 0
    for word in lrw.words:
        for split, count in lrw.clips_per_split.items():
            names = lrw.identities.get(split) or []
            if count and not names:
                raise ValueError(f"sample_data.lrw.identities: no identity for split {split!r}")
            for k in range(count):
                number += 1
                rel = f"lrw/lipread_mp4/{word}/{split}/{word}_{number:05d}.mp4"
                identity = _check_identity(names[k % len(names)], f"lrw.identities.{split}")
                clips.append(
                    SampleClip(
                        dataset="lrw",
                        video=rel,
                        audio=None,
                        speaker=f"{word}_{number:05d}",
                        emotion="neutral",
                        level=1,
                        num_frames=lrw.num_frames,
                        fps=lrw.fps,
                        width=lrw.size,
                        height=lrw.size,
                        audio_rate=lrw.audio_rate,
                        audio_channels=1,
                        crf=lrw.crf,
                        identity=identity,
                        seed=clip_seed(params.seed, rel),
                    )
                )
    return clips


def framing(clip: SampleClip) -> Framing:
    """MEAD: the face a little above the frame centre, eye distance 15 % of the frame height
    (about MEAD's front view); LRW: centred, eye distance about a quarter of the frame."""
    if clip.dataset == "mead":
        return Framing(
            clip.width, clip.height, (clip.width / 2, clip.height * 0.46), 0.15 * clip.height
        )
    return Framing(clip.width, clip.height, (clip.width / 2, clip.height * 0.5), 0.24 * clip.width)


def head_motion(clip: SampleClip, rng: np.random.Generator, eye_distance: float) -> list[HeadPose]:
    """Smooth per-frame head motion: roll, shift and scale, slow sines with an emotion bias."""
    roll_bias, nod_bias, gain = EMOTION_STYLE[clip.emotion]
    phases = rng.uniform(0, 2 * np.pi, 4)
    freqs = rng.uniform(0.3, 0.9, 4)
    t = np.arange(clip.num_frames) / clip.fps
    waves = np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])
    roll = roll_bias + ROLL_DEG * gain * waves[0]
    dx = eye_distance * SHIFT_U * gain * waves[1]
    dy = eye_distance * (nod_bias + 0.6 * SHIFT_U * gain * waves[2])
    scale = 1.0 + SCALE * gain * waves[3]
    return [
        HeadPose(float(r), (float(x), float(y)), float(s))
        for r, x, y, s in zip(roll, dx, dy, scale, strict=True)
    ]


@dataclass(frozen=True)
class ClipSignals:
    """What a clip shows, frame by frame: the plan the renderer follows."""

    speech: Speech
    opening: np.ndarray  # jaw opening per frame, expression's plus speech's
    width: np.ndarray  # lip width per frame
    poses: list[HeadPose]


def clip_signals(clip: SampleClip) -> ClipSignals:
    rng = np.random.default_rng(clip.seed)
    speech = synth_speech(clip.duration_s, clip.audio_rate, clip.seed, rng.uniform(110, 220))
    expr = expression(clip.emotion, clip.level)
    mouth = speech.mouth_at_frames(clip.num_frames, clip.fps)
    opening = expr.opening + (1.0 - expr.opening) * mouth
    width = np.clip(expr.width + speech.width_at_frames(clip.num_frames, clip.fps), -1.0, 1.0)
    poses = head_motion(clip, rng, framing(clip).eye_distance)
    return ClipSignals(speech, opening.astype(np.float32), width.astype(np.float32), poses)


def render_frames(clip: SampleClip, signals: ClipSignals | None = None, paint_cavity: bool = True):
    """Yield the clip's RGB frames (``paint_cavity`` False: the gap the jaw leaves shows the
    stretched lips, not the dark mouth: the warp alone, as a probe of what a warp can show)."""
    signals = signals or clip_signals(clip)
    identity = IDENTITIES[clip.identity]
    face = rig(identity.photo)
    moves = expression(clip.emotion, clip.level).moves
    where = framing(clip)
    for k in range(clip.num_frames):
        field = face.field(moves, float(signals.opening[k]), float(signals.width[k]))
        if not paint_cavity:
            field[..., 2] = 0.0
        yield face.render(identity, where, signals.poses[k], field)


def write_clip(
    clip: SampleClip,
    root: str | Path,
    signals: ClipSignals | None = None,
    paint_cavity: bool = True,
) -> dict:
    """Generate one clip (and its separate audio file, for MEAD) under ``root``, encoded by the
    pinned PyAV wheel's codecs: the same bytes on any machine, whatever its ffmpeg. ``signals``
    and ``paint_cavity`` change what it shows (``render_frames``), for probes."""
    root = Path(root)
    signals = signals or clip_signals(clip)
    samples = signals.speech.samples
    audio = np.stack([samples, samples], axis=1) if clip.audio_channels == 2 else samples
    if clip.audio:
        encode_audio_inprocess(audio, clip.audio_rate, root / clip.audio, codec="aac")
    with PyAVVideoWriter(
        root / clip.video,
        clip.width,
        clip.height,
        clip.fps,
        crf=clip.crf,
        preset="superfast",
        audio=audio,
        audio_rate=clip.audio_rate,
    ) as writer:
        for frame in render_frames(clip, signals, paint_cavity):
            writer.write(frame)
    written = [p for p in (clip.video, clip.audio) if p]
    md5 = {p: hashlib.md5((root / p).read_bytes()).hexdigest() for p in written}
    return {**asdict(clip), "duration_s": clip.duration_s, "md5": md5}


SAMPLE_FOLDERS = ("mead", "lrw")  # what an earlier sample dataset holds at its root


def check_replaceable_root(out: str | Path) -> None:
    """A new sample dataset replaces ``out`` whole: refuse a file, or a folder holding anything
    but an earlier sample dataset (``mead/``, ``lrw/``), before any work, so a user's folder
    named by mistake is never deleted."""
    check_replaceable(
        Path(out),
        SAMPLE_FOLDERS,
        "the sample dataset's folder",
        "a sample dataset's",
        "an earlier sample dataset",
    )


def write_portrait(path: str | Path, identity: str = "astronaut_wide") -> Path:
    """A neutral, still, frontal portrait of ``identity`` for the generation demo (PNG)."""
    from PIL import Image

    ident = IDENTITIES[_check_identity(identity, "portrait")]
    face = rig(ident.photo)
    where = Framing(PORTRAIT_SIZE, PORTRAIT_SIZE, (PORTRAIT_SIZE / 2, PORTRAIT_SIZE * 0.48), 110.0)
    image = face.render(ident, where, HeadPose(), face.neutral_field())
    with replacing(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)
