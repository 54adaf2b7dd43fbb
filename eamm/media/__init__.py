"""Media I/O built on the system ffmpeg/ffprobe."""

from eamm.media.encode import VideoWriter, encode_audio
from eamm.media.probe import MediaInfo, StreamInfo, probe
from eamm.media.tools import require_tool, tool_version

__all__ = [
    "MediaInfo",
    "StreamInfo",
    "VideoWriter",
    "encode_audio",
    "probe",
    "require_tool",
    "tool_version",
]
