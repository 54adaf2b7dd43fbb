"""Streaming decode with PyAV and frame-rate normalisation identical to ffmpeg's ``fps`` filter.

Frames stay in the decoder's own pixel format (YUV); nothing converts a whole frame to RGB.
Memory is one or two frames, whatever the clip length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from eamm.errors import MediaError


class UnreadableVideoError(MediaError):
    code = "unreadable_video"


class NoVideoStreamError(MediaError):
    code = "no_video_stream"


@dataclass(frozen=True)
class VideoStreamInfo:
    width: int
    height: int
    fps: Fraction
    num_frames: int | None
    pix_fmt: str


def _round_half_away(value: float) -> int:
    """ffmpeg's AV_ROUND_NEAR_INF: halves round away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def open_video(path: str | Path, threads: int = 1) -> tuple[av.container.InputContainer, object]:
    """Open a container and its first video stream, with typed errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableVideoError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise UnreadableVideoError(path, "zero-length file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise UnreadableVideoError(path, f"unreadable video ({err})") from None
    if not container.streams.video:
        container.close()
        raise NoVideoStreamError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE" if threads <= 1 else "AUTO"
    stream.codec_context.thread_count = max(1, threads)
    return container, stream


def stream_info(stream: object) -> VideoStreamInfo:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return VideoStreamInfo(
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=Fraction(rate),
        num_frames=stream.frames or None,
        pix_fmt=stream.codec_context.pix_fmt or "",
    )


def decode_frames(path: str | Path, threads: int = 1) -> Iterator[av.VideoFrame]:
    """Every decoded frame in order; a truncated or corrupt stream raises UnreadableVideoError."""
    container, stream = open_video(path, threads)
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as err:
        raise UnreadableVideoError(path, f"decoding failed ({err})") from None
    finally:
        container.close()


def resample_fps(
    frames: Iterator[av.VideoFrame], fps: int, input_fps: Fraction
) -> Iterator[av.VideoFrame]:
    """Duplicate or drop frames exactly as ffmpeg's ``fps=fps`` filter (round=near) does.

    Each frame's time (relative to the first frame) is rounded to the output tick grid; output
    tick n shows the last input frame whose rounded tick is <= n. At the end, ticks continue to
    the rounded end time of the last frame (its time plus its duration).
    """
    first_time: float | None = None
    previous: av.VideoFrame | None = None
    previous_time = 0.0
    next_tick = 0
    for frame in frames:
        time = float(frame.time) if frame.time is not None else None
        if first_time is None:
            first_time = time or 0.0
        rel = (time - first_time) if time is not None else previous_time + float(1 / input_fps)
        tick = _round_half_away(rel * fps)
        if previous is not None:
            while next_tick < tick:
                yield previous
                next_tick += 1
        previous, previous_time = frame, rel
    if previous is None:
        return
    duration = float(1 / input_fps)
    if previous.duration and previous.time_base:
        duration = float(previous.duration * previous.time_base)
    end_tick = _round_half_away((previous_time + duration) * fps)
    while next_tick < max(end_tick, 1):
        yield previous
        next_tick += 1
