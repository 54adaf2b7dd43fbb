"""Plan and write the bundled sample dataset in the real MEAD and LRW layouts.

MEAD: ``mead/<speaker>/video/front/<emotion>/level_<n>/<utt>.mp4`` (1920x1080, 30 fps, AAC 48 kHz
stereo) with ``mead/<speaker>/audio/<emotion>/level_<n>/<utt>.m4a``. LRW:
``lrw/lipread_mp4/<WORD>/<split>/<WORD>_<nnnnn>.mp4`` (256x256, 25 fps, 29 frames, AAC 16 kHz mono).
Every clip has its own seed derived from the dataset seed and the clip's path, so any one clip
can be regenerated alone and the result does not depend on processing order.
"""

from __future__ import annotations

import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from eamm.config import SampleDataParams
from eamm.media import VideoWriter, encode_audio
from eamm.sample.face import IDENTITIES, Framing, open_mouth, render
from eamm.sample.voice import synth_speech

# Head-motion style per emotion: (tilt bias deg, nod bias px at 1080p, motion gain, mouth gain).
EMOTION_STYLE = {
    "angry": (2.0, -4.0, 1.3, 1.1),
    "contempt": (-3.0, 0.0, 0.8, 0.7),
    "disgusted": (3.0, 4.0, 1.0, 0.8),
    "fear": (0.0, -6.0, 1.4, 0.9),
    "happy": (-2.0, -2.0, 1.2, 1.1),
    "neutral": (0.0, 0.0, 0.7, 1.0),
    "sad": (1.0, 10.0, 0.5, 0.7),
    "surprised": (0.0, -8.0, 1.1, 1.2),
}


@dataclass(frozen=True)
class SampleClip:
    """One clip to generate; paths are relative to the output root."""

    dataset: str
    video: str
    audio: str | None
    speaker: str
    emotion: str
    num_frames: int
    fps: int
    width: int
    height: int
    audio_rate: int
    audio_channels: int
    crf: int
    identity: int
    seed: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def clip_seed(seed: int, key: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(key.encode())]).generate_state(1)[0])


def plan(params: SampleDataParams) -> list[SampleClip]:
    clips: list[SampleClip] = []
    mead = params.mead
    for s, speaker in enumerate(mead.speakers):
        for spec in mead.clips:
            rel = f"{speaker}/video/front/{spec.emotion}/level_{spec.level}/{spec.utterance}.mp4"
            seed = clip_seed(params.seed, rel)
            duration = np.random.default_rng(seed).uniform(*mead.duration_s)
            clips.append(
                SampleClip(
                    dataset="mead",
                    video=f"mead/{rel}",
                    audio=(
                        f"mead/{speaker}/audio/{spec.emotion}/level_{spec.level}/"
                        f"{spec.utterance}.m4a"
                    ),
                    speaker=speaker,
                    emotion=spec.emotion,
                    num_frames=round(duration * mead.fps),
                    fps=mead.fps,
                    width=mead.width,
                    height=mead.height,
                    audio_rate=mead.audio_rate,
                    audio_channels=2,
                    crf=mead.crf,
                    identity=s % len(IDENTITIES),
                    seed=seed,
                )
            )
    lrw = params.lrw
    number = 0
    for w, word in enumerate(lrw.words):
        for split, count in lrw.clips_per_split.items():
            for _ in range(count):
                number += 1
                rel = f"lrw/lipread_mp4/{word}/{split}/{word}_{number:05d}.mp4"
                clips.append(
                    SampleClip(
                        dataset="lrw",
                        video=rel,
                        audio=None,
                        speaker=f"{word}_{number:05d}",
                        emotion="neutral",
                        num_frames=lrw.num_frames,
                        fps=lrw.fps,
                        width=lrw.size,
                        height=lrw.size,
                        audio_rate=lrw.audio_rate,
                        audio_channels=1,
                        crf=lrw.crf,
                        identity=(w + number) % len(IDENTITIES),
                        seed=clip_seed(params.seed, rel),
                    )
                )
    return clips


def _framing(clip: SampleClip) -> Framing:
    if clip.dataset == "mead":
        return Framing(clip.width, clip.height, (clip.width / 2, clip.height * 0.45), 380.0)
    return Framing(clip.width, clip.height, (clip.width / 2, clip.height * 0.52), 118.0)


def write_clip(clip: SampleClip, root: str | Path) -> dict:
    """Generate one clip (and its separate audio file, for MEAD) under ``root``."""
    root = Path(root)
    rng = np.random.default_rng(clip.seed)
    speech = synth_speech(clip.duration_s, clip.audio_rate, clip.seed, rng.uniform(110, 220))
    mouth = speech.mouth_at_frames(clip.num_frames, clip.fps)
    identity = IDENTITIES[clip.identity]
    src = identity.source()
    framing = _framing(clip)
    tilt, nod, gain, mouth_gain = EMOTION_STYLE[clip.emotion]
    px = framing.face_height / 380.0
    phases = rng.uniform(0, 2 * np.pi, 4)
    freqs = rng.uniform(0.3, 0.9, 4)
    t = np.arange(clip.num_frames) / clip.fps
    waves = np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])
    angles = tilt + 3.0 * gain * waves[0]
    dx = px * 25.0 * gain * waves[1]
    dy = px * (nod + 12.0 * gain * waves[2])
    scales = 1.0 + 0.03 * gain * waves[3]

    stereo = np.stack([speech.samples, speech.samples], axis=1)
    audio = stereo if clip.audio_channels == 2 else speech.samples
    with tempfile.TemporaryDirectory() as tmp:
        wav = encode_audio(audio, clip.audio_rate, Path(tmp) / "speech.wav", codec="pcm_f32le")
        if clip.audio:
            encode_audio(audio, clip.audio_rate, root / clip.audio, codec="aac")
        with VideoWriter(
            root / clip.video,
            clip.width,
            clip.height,
            clip.fps,
            crf=clip.crf,
            preset="veryfast",
            audio_path=wav,
            audio_rate=clip.audio_rate,
            audio_channels=clip.audio_channels,
        ) as writer:
            for k in range(clip.num_frames):
                face = open_mouth(src, identity, mouth_gain * mouth[k])
                writer.write(render(face, identity, framing, angles[k], (dx[k], dy[k]), scales[k]))
    return {**asdict(clip), "duration_s": clip.duration_s}


def write_portrait(path: str | Path) -> Path:
    """The unedited photo as a portrait for the generation demo (PNG, lossless, deterministic)."""
    from PIL import Image

    from eamm.sample.face import astronaut

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(astronaut()).save(path, format="PNG")
    return path
