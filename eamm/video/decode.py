"""Streaming decode with PyAV and frame-rate normalisation identical to ffmpeg's ``fps`` filter.

Frames stay in the decoder's own pixel format (YUV); nothing converts a whole frame to RGB.
Memory is one or two frames, whatever the clip length. Frames come out the way players show
them: non-square pixels (an anamorphic clip, sample aspect ratio not 1:1) are scaled to square
ones, then a display matrix (a phone clip stored sideways) is applied as ffmpeg's CLI applies it.
The video stream is the one ffmpeg's CLI maps, never a cover picture (``best_video_stream``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from eamm.errors import MediaError, MissingFileError
from eamm.media.probe import square_pixel_size, video_stream_score


class UnreadableVideoError(MediaError):
    code = "unreadable_video"


class NoVideoStreamError(MediaError):
    code = "no_video_stream"


@dataclass(frozen=True)
class VideoStreamInfo:
    """``width`` x ``height`` is the size of the frames ``decode_frames`` gives before their
    display matrix: square pixels (the stored size stretched by ``sample_aspect_ratio``, None
    when the pixels are square); the display matrix may still swap width and height."""

    width: int
    height: int
    fps: Fraction
    num_frames: int | None
    pix_fmt: str
    sample_aspect_ratio: Fraction | None = None


def _round_half_away(value: float) -> int:
    """ffmpeg's AV_ROUND_NEAR_INF: halves round away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def best_video_stream(
    container: av.container.InputContainer,
) -> av.video.stream.VideoStream | None:
    """The video stream ffmpeg's CLI maps by default: attached pictures (cover art) left out,
    the most pixels wins, a ``default`` stream first (``eamm.media.probe.video_stream_score``,
    which ``MediaInfo.video`` uses too); None when there is no other video stream.

    Every reader of a raw video takes its stream here: the first video stream of a Matroska
    file with a cover picture first was one still frame.
    """
    flags = av.stream.Disposition
    videos = [s for s in container.streams.video if not s.disposition & flags.attached_pic]
    return max(
        videos,
        key=lambda s: video_stream_score(
            s.codec_context.width, s.codec_context.height, bool(s.disposition & flags.default)
        ),
        default=None,
    )


def open_video(path: str | Path, threads: int = 1) -> tuple[av.container.InputContainer, object]:
    """Open a container and its video stream (``best_video_stream``), with typed errors for
    bad files."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise UnreadableVideoError(path, "zero-length file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise UnreadableVideoError(path, f"unreadable video ({err})") from None
    stream = best_video_stream(container)
    if stream is None:
        pictures = bool(container.streams.video)
        container.close()
        raise NoVideoStreamError(
            path, "no video stream (only a still picture)" if pictures else "no video stream"
        )
    stream.thread_type = "SLICE" if threads <= 1 else "AUTO"
    stream.codec_context.thread_count = max(1, threads)
    return container, stream


def sample_aspect_ratio(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's SAR as ffmpeg guesses it (the container's, else the codec's); None when the
    pixels are square (1:1) or it is unset (0/0, 0/1)."""
    sar = stream.sample_aspect_ratio
    return Fraction(sar) if sar and sar > 0 and sar != 1 else None


def stream_info(stream: object) -> VideoStreamInfo:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    sar = sample_aspect_ratio(stream)
    width, height = square_pixel_size(stream.codec_context.width, stream.codec_context.height, sar)
    return VideoStreamInfo(
        width=width,
        height=height,
        fps=Fraction(rate),
        num_frames=stream.frames or None,
        pix_fmt=stream.codec_context.pix_fmt or "",
        sample_aspect_ratio=sar,
    )


def square_pixel_filters(stream: av.video.stream.VideoStream) -> list[tuple[str, str | None]]:
    """A ``scale`` to square pixels for a stream whose sample aspect ratio is not 1:1, as players
    show it (``square_pixel_size``: the short side scaled up, bicubic, so no stored pixel is
    lost); none for square pixels, so their frames stay the decoder's own, byte for byte."""
    sar = sample_aspect_ratio(stream)
    stored = (stream.codec_context.width, stream.codec_context.height)
    size = square_pixel_size(*stored, sar)
    if size == stored:
        return []
    return [("scale", f"{size[0]}:{size[1]}:flags=bicubic+accurate_rnd")]


def display_filters(frame: av.VideoFrame) -> list[tuple[str, str | None]]:
    """The filters ffmpeg's CLI inserts to show ``frame`` upright (fftools' autorotate): a
    transpose for 90/270 degrees (with the mirror the matrix may add), flips for 180 and a
    mirror, ``rotate`` for any other angle; none without a display matrix.

    ``frame.rotation`` reads the matrix without PyAV's side-data objects, which tie the frame
    into a reference cycle: kept through a clip, it pinned the clip's decoder buffers until a
    full garbage collection (flow RSS +10 MiB a MEAD clip). So the matrix itself is read only
    for a turned frame (to see its mirror); one that turns nothing and only mirrors vertically
    is taken as upright.
    """
    if frame.rotation == 0:
        return []
    side = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if side is None:
        return []
    matrix = np.frombuffer(bytes(side), dtype=np.int32)
    theta = -float(frame.rotation)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return [("transpose", "cclock_flip" if matrix[3] > 0 else "clock")]
    if abs(theta - 180) < 1:
        return [(name, None) for name, i in (("hflip", 0), ("vflip", 4)) if matrix[i] < 0]
    if abs(theta - 270) < 1:
        return [("transpose", "clock_flip" if matrix[3] < 0 else "cclock")]
    if abs(theta) > 1:
        return [("rotate", f"{theta:f}*PI/180")]
    return [("vflip", None)] if matrix[4] < 0 else []


def _upright(stream: object, first: av.VideoFrame) -> av.filter.Graph | None:
    """A filter graph scaling every frame to square pixels and then applying ``first``'s display
    matrix (the SAR is the stored picture's, so it goes first), or None if neither is needed."""
    chain = square_pixel_filters(stream) + display_filters(first)
    if not chain:
        return None
    graph = av.filter.Graph()
    nodes = [graph.add_buffer(template=stream)]
    nodes += [graph.add(name, args) for name, args in chain]
    nodes.append(graph.add("buffersink"))
    for a, b in pairwise(nodes):
        a.link_to(b)
    graph.configure()
    return graph


def _keep_colour(source: av.VideoFrame, frame: av.VideoFrame) -> av.VideoFrame:
    """``frame`` with ``source``'s colour tags: a filtered frame comes out untagged (PyAV's buffer
    source is given none), and an untagged frame is converted to RGB as BT.601 (a BT.709 clip's
    turned or widened frames had shifted colours). Turning and scaling keep the colours."""
    for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
        setattr(frame, name, getattr(source, name))
    return frame


def decode_frames(path: str | Path, threads: int = 1) -> Iterator[av.VideoFrame]:
    """Every decoded frame of the video stream (``best_video_stream``) in order, as players show
    it: in square pixels, then upright (the display matrix applied); a truncated or corrupt
    stream raises UnreadableVideoError."""
    container, stream = open_video(path, threads)
    graph: av.filter.Graph | None = None
    try:
        for k, frame in enumerate(container.decode(stream)):
            if k == 0:
                graph = _upright(stream, frame)
            if graph is None:
                yield frame
            else:
                graph.push(frame)
                yield _keep_colour(frame, graph.pull())
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
