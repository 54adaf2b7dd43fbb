"""Decoding any audio or video file to 16 kHz mono float32 in-process (PyAV), and WAV output."""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from eamm.atomic import temp_beside
from eamm.config import AUDIO_RATE
from eamm.errors import MediaError
from eamm.video.decode import best_video_stream


class NoAudioError(MediaError):
    """The container has no audio stream (e.g. a silent video)."""

    code = "no_audio"

    def __init__(self, path: str | Path, reason: str = "no audio stream") -> None:
        super().__init__(path, reason)


class UnreadableAudioError(MediaError):
    """The file cannot be read or decoded as audio (empty, missing, corrupt)."""

    code = "unreadable_audio"


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _channel_mean(frame: av.AudioFrame) -> np.ndarray:
    """The mean of a packed (interleaved) float frame's channels, per sample: averaged frame by
    frame, so a long many-channel file never holds all its channels at once. Packed, not
    planar: PyAV counts 9 planes in an 8-channel planar frame and crashes the process
    (SIGSEGV) reading them, so a 7.1 soundtrack killed a whole preprocessing run."""
    samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
    return samples.mean(axis=1, dtype=np.float32)


def load_audio_16k_mono(
    path: str | Path, stream_from_video: bool = False, trim_to_duration: bool = False
) -> np.ndarray:
    """First audio stream of ``path`` as 16 kHz mono float32 in [-1, 1].

    Channels are resampled to 16 kHz with their own layout and then averaged, like
    ``librosa.load`` (EAMM's loader) does; libswresample's own mono downmix would instead give
    0.707 (L + R), sqrt(2) louder, which shifts the log-energy MFCC column.

    With ``stream_from_video`` the audio is treated as a video's soundtrack: it is shifted so
    sample 0 coincides with the first video frame (audio starting later is zero-padded, earlier
    is cut), and trimmed to the stream's declared duration, which drops the AAC encoder
    padding that a plain decode keeps (LRW's 1.16 s clips decode to 19456 samples, not 18560).

    With ``trim_to_duration`` a standalone audio file is trimmed the same way, to its stream's
    declared duration, where the decode runs past it by no more than two codec frames: the
    AAC encoder's end padding (a 1.366 s M4A decodes to 1.408 s, 35 video frames, not 34).
    A longer overrun means the duration is an estimate from the bit rate (an MP3 without a
    Xing header, raw ADTS AAC), which may fall inside the speech, and the audio is kept whole.
    Off by default: preprocessing keeps the plain decode, as EAMM's loader does.

    Raises ``UnreadableAudioError`` ("unreadable media (...)") for empty, missing or
    undecodable files and ``NoAudioError`` when there is no audio stream.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise UnreadableAudioError(path, "unreadable media (empty file)")
    except OSError as err:
        raise UnreadableAudioError(path, f"unreadable media ({err.strerror or err})") from err

    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise NoAudioError(path)
            stream = container.streams.audio[0]
            video = best_video_stream(container)  # never a cover picture
            audio_start = _seconds(stream.start_time, stream.time_base)
            video_start = _seconds(video.start_time, video.time_base) if video else None
            duration = _seconds(stream.duration, stream.time_base)
            # the most the encoder pads at the end (two codec frames), in 16 kHz samples
            padding = 2 * (stream.codec_context.frame_size or 1024) * AUDIO_RATE
            max_padding = -(-padding // (stream.rate or AUDIO_RATE))
            # layout=None keeps the source channels; we average them below (see docstring).
            resampler = av.AudioResampler(format="flt", layout=None, rate=AUDIO_RATE)
            for frame in container.decode(stream):
                chunks.extend(_channel_mean(f) for f in resampler.resample(frame))
            chunks.extend(_channel_mean(f) for f in resampler.resample(None))
    except av.FFmpegError as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UnreadableAudioError(path, f"unreadable media ({reason})") from err

    if not chunks:
        raise UnreadableAudioError(path, "unreadable media (no audio samples decoded)")
    audio = np.concatenate(chunks)
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        # A float file's NaN/inf would turn the MFCC windows, and every frame made from them,
        # into garbage (NaN audio drew black frames with exit 0).
        raise UnreadableAudioError(path, f"damaged audio ({bad} samples are NaN or infinite)")

    if stream_from_video:
        offset = 0
        if audio_start is not None and video_start is not None:
            offset = round((audio_start - video_start) * AUDIO_RATE)
        if offset > 0:
            audio = np.concatenate([np.zeros(offset, np.float32), audio])
        elif offset < 0:
            audio = audio[-offset:]
        if duration is not None and duration > 0:
            # The declared end, on the video's timeline, is offset + duration.
            audio = audio[: max(0, offset + round(duration * AUDIO_RATE))]
    elif trim_to_duration and duration is not None and duration > 0:
        declared = round(duration * AUDIO_RATE)
        if 0 < len(audio) - declared <= max_padding:
            audio = audio[:declared]
    # Float decoders (MP3, AAC) can overshoot full scale slightly.
    return np.clip(audio, -1.0, 1.0)


def fit_length(samples: np.ndarray, target_len: int) -> tuple[np.ndarray, int]:
    """Trim or zero-pad ``samples`` at the end to ``target_len``.

    Returns ``(audio, target_len - len(samples))``: positive means that many zeros were
    appended, negative that many samples were cut, so callers can report the mismatch.
    """
    if target_len < 0:
        raise ValueError(f"target_len must be >= 0, got {target_len}")
    samples = np.asarray(samples)
    diff = target_len - samples.shape[0]
    if diff > 0:
        pad = np.zeros((diff, *samples.shape[1:]), dtype=samples.dtype)
        return np.concatenate([samples, pad]), diff
    return samples[:target_len].copy(), diff


def write_wav_s16(samples: np.ndarray, path: str | Path, sample_rate: int = AUDIO_RATE) -> Path:
    """Write mono float audio in [-1, 1] as 16-bit PCM WAV, atomically.

    The file is written under a temporary name in the destination folder and renamed into
    place, so a crash never leaves a half-written WAV that a later stage would trust.
    """
    path = Path(path)
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"write_wav_s16 expects 1-D mono audio, got shape {audio.shape}")
    encoded = io.BytesIO()  # libsndfile's write errors carry no errno ("System error."): a
    # full disk looked like a fault of the clip; Python's own write raises OSError(ENOSPC)
    sf.write(encoded, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    tmp = temp_beside(path, ".partial.wav")
    try:
        tmp.write_bytes(encoded.getbuffer())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise MediaError(path, f"cannot write WAV ({err.strerror or err})") from err
    return path
