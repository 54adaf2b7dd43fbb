"""ffprobe wrapper returning typed stream facts (used by tests, indexing and preprocessing)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from eamm.errors import MediaError
from eamm.media.tools import require_tool


@dataclass(frozen=True)
class StreamInfo:
    """One stream of a container; video fields are None for audio streams and vice versa."""

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


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    duration_s: float | None
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def video(self) -> StreamInfo | None:
        return next((s for s in self.streams if s.codec_type == "video"), None)

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
    return StreamInfo(
        index=int(raw["index"]),
        codec_type=raw.get("codec_type", ""),
        codec_name=raw.get("codec_name", ""),
        duration_s=_float(raw.get("duration")),
        width=_int(raw.get("width")),
        height=_int(raw.get("height")),
        fps=fps if raw.get("codec_type") == "video" else None,
        num_frames=_int(raw.get("nb_read_frames") or raw.get("nb_frames")),
        pix_fmt=raw.get("pix_fmt"),
        sample_rate=_int(raw.get("sample_rate")),
        channels=_int(raw.get("channels")),
        sample_fmt=raw.get("sample_fmt"),
    )


def probe(path: str | Path, count_frames: bool = False) -> MediaInfo:
    """Read container and stream facts; ``count_frames`` decodes to count frames exactly."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file does not exist")
    cmd = [require_tool("ffprobe"), "-v", "error", "-print_format", "json"]
    cmd += ["-show_format", "-show_streams"]
    if count_frames:
        cmd += ["-count_frames"]
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "ffprobe failed"
        raise MediaError(path, f"unreadable media ({reason})")
    data = json.loads(proc.stdout or "{}")
    fmt = data.get("format", {})
    return MediaInfo(
        path=str(path),
        format_name=fmt.get("format_name", ""),
        duration_s=_float(fmt.get("duration")),
        streams=[_stream(s) for s in data.get("streams", [])],
    )
