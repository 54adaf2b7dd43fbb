"""ffprobe wrapper returning typed stream facts (used by tests, indexing and preprocessing)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from eamm.errors import MediaError, MissingFileError
from eamm.media.tools import file_argument, require_tool


def square_pixel_size(width: int, height: int, sar: Fraction | None) -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` picture shown in square pixels, as players
    show a stream whose sample aspect ratio is ``sar``: a SAR above 1 widens the picture, one
    below 1 makes it taller, so the short side is scaled up and no stored pixel is lost. The
    scaled side is rounded to an even number (a 4:2:0 picture's chroma planes need it, as
    ffmpeg's ``scale=-2``). No SAR, 0 (unknown) or 1:1 keeps the size.
    """
    if not sar or sar == 1:
        return width, height
    if sar > 1:
        return max(2, 2 * round(width * sar / 2)), height
    return width, max(2, 2 * round(height / sar / 2))


def video_stream_score(width: int | None, height: int | None, default: bool) -> int:
    """The score by which ffmpeg's CLI picks the video stream it maps by default (fftools'
    ``ffmpeg_opt.c``): the stream's pixels, plus 5,000,000 for a ``default`` stream; the first
    of equal scores wins. Attached pictures (cover art) are left out before scoring."""
    return (width or 0) * (height or 0) + 5_000_000 * int(default)


def _ratio(value: object) -> Fraction | None:
    """``"2:1"`` as ffprobe writes a ratio; None for unset, unknown (``0:1``) or 1:1."""
    try:
        num, den = (int(v) for v in str(value).split(":"))
        ratio = Fraction(num, den)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return ratio if ratio > 0 and ratio != 1 else None


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a container; video fields are None for audio streams and vice versa.

    A video's ``width`` and ``height`` are those of its frames in square pixels, as the decoder
    (``eamm.video.decode``) gives them: ``stored_width`` x ``stored_height`` stretched by the
    ``sample_aspect_ratio`` (None when square); a display matrix may still swap them.
    ``attached_pic`` marks a still picture (cover art), never taken as the video.
    """

    index: int
    codec_type: str
    codec_name: str
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: Fraction | None = None
    num_frames: int | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    sample_fmt: str | None = None
    stored_width: int | None = None
    stored_height: int | None = None
    sample_aspect_ratio: Fraction | None = None
    default: bool = False
    attached_pic: bool = False


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    duration_s: float | None
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def video(self) -> StreamInfo | None:
        """The video stream ffmpeg (and ``eamm.video.decode``) picks: not an attached picture,
        the highest ``video_stream_score``; None when there is none."""
        videos = [s for s in self.streams if s.codec_type == "video" and not s.attached_pic]
        return max(
            videos,
            key=lambda s: video_stream_score(s.stored_width, s.stored_height, s.default),
            default=None,
        )

    @property
    def audio(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.codec_type == "audio"), None)


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _stream(raw: dict) -> StreamInfo:
    rate = raw.get("avg_frame_rate") or raw.get("r_frame_rate")
    fps = None
    if rate and rate != "0/0":
        fps = Fraction(rate)
    stored_width, stored_height = _int(raw.get("width")), _int(raw.get("height"))
    sar = _ratio(raw.get("sample_aspect_ratio"))
    width, height = stored_width, stored_height
    if width and height:
        width, height = square_pixel_size(width, height, sar)
    disposition = raw.get("disposition") or {}
    return StreamInfo(
        index=int(raw["index"]),
        codec_type=raw.get("codec_type", ""),
        codec_name=raw.get("codec_name", ""),
        duration_s=_float(raw.get("duration")),
        width=width,
        height=height,
        fps=fps if raw.get("codec_type") == "video" else None,
        num_frames=_int(raw.get("nb_read_frames") or raw.get("nb_frames")),
        pix_fmt=raw.get("pix_fmt"),
        sample_rate=_int(raw.get("sample_rate")),
        channels=_int(raw.get("channels")),
        sample_fmt=raw.get("sample_fmt"),
        stored_width=stored_width,
        stored_height=stored_height,
        sample_aspect_ratio=sar,
        default=bool(disposition.get("default")),
        attached_pic=bool(disposition.get("attached_pic")),
    )


def probe(path: str | Path, count_frames: bool = False) -> MediaInfo:
    """Read container and stream facts; ``count_frames`` decodes to count frames exactly."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise MediaError(path, "unreadable media (empty file)")
    cmd = [require_tool("ffprobe"), "-v", "error", "-print_format", "json"]
    cmd += ["-show_format", "-show_streams"]
    if count_frames:
        cmd += ["-count_frames"]
    argument = file_argument(path)
    proc = subprocess.run([*cmd, argument], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "ffprobe failed"
        reason = reason.removeprefix(f"{argument}: ")  # ffprobe names the file too
        raise MediaError(path, f"unreadable media ({reason})")
    data = json.loads(proc.stdout or "{}")
    fmt = data.get("format", {})
    return MediaInfo(
        path=str(path),
        format_name=fmt.get("format_name", ""),
        duration_s=_float(fmt.get("duration")),
        streams=[_stream(s) for s in data.get("streams", [])],
    )
