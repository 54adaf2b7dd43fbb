"""Writing video and audio atomically (temp file, then rename): through an ffmpeg subprocess, or
H.264 in-process through PyAV's bundled libx264 where a per-clip process start-up would dominate.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Self

import av
import numpy as np

from eamm.atomic import temp_beside
from eamm.errors import EncoderError
from eamm.media.tools import file_argument, require_tool
from eamm.video.colour import rgb_to_yuv444

# Flags that make the muxers and encoders emit the same bytes on every run.
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
BITEXACT += ["-map_metadata", "-1"]


def _temp_path(path: Path) -> Path:
    """A new file beside ``path`` to encode into, its extension kept for ffmpeg's muxer
    choice; unique, so two runs writing the same output never share one (they did: two
    `eamm generate` into one --out interleaved their frames in one file)."""
    return temp_beside(path, f".partial{path.suffix}")


# ffmpeg exits 0 after "Error writing trailer of ...: No space left on device": the file is cut
# short (a full disk left a 4 KiB "video" and exit 0). Its own error lines decide too.
_FFMPEG_ERROR = re.compile(r"^(\[[^]]*\] )?Error (writing|closing|while)|No space left on device")


def _finish(proc: subprocess.Popen, tmp: Path, out: Path, data: bytes | None = None) -> None:
    _, err = proc.communicate(data)
    lines = err.decode(errors="replace").strip().splitlines() if err else []
    errors = [line for line in lines if _FFMPEG_ERROR.search(line)]
    if proc.returncode != 0 or errors:
        tmp.unlink(missing_ok=True)
        tail = (errors or lines)[-1:]
        raise EncoderError(out, f"ffmpeg failed: {' '.join(tail) or proc.returncode}")
    os.replace(tmp, out)


class _FrameWriter:
    """What both H.264 writers share: the frame check and the ``with`` contract (close on
    success, abort and leave no file on an exception)."""

    path: Path
    width: int
    height: int

    def _check(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be uint8 ({self.height}, {self.width}, 3), got "
                f"{frame.dtype} {frame.shape}"
            )

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class VideoWriter(_FrameWriter):
    """Encode RGB uint8 frames (H, W, 3) to H.264, optionally muxing an audio file.

    Frames stream through a pipe, so memory stays flat in clip length. The output appears
    only when ``close()`` succeeds; a failure or an exception inside the ``with`` block
    leaves no file behind.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float | str,
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        audio_path: str | Path | None = None,
        audio_codec: str = "aac",
        audio_rate: int | None = None,
        audio_channels: int | None = None,
        audio_bitrate: str = "128k",
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temp_path(self.path)
        self.width, self.height = width, height
        cmd = [require_tool("ffmpeg"), "-nostdin", "-y", "-loglevel", "error"]
        # yuv444p output: converted here as the in-process writer does (same YUV, same bytes)
        self._yuv444 = pix_fmt == "yuv444p"
        raw_fmt = "yuv444p" if self._yuv444 else "rgb24"
        cmd += ["-f", "rawvideo", "-pix_fmt", raw_fmt, "-s", f"{width}x{height}"]
        cmd += ["-r", str(fps), "-i", "pipe:0"]
        if audio_path is not None:
            cmd += ["-i", file_argument(audio_path)]
        cmd += ["-map", "0:v:0"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", pix_fmt]
        cmd += ["-threads", str(threads), "-x264-params", f"threads={threads}"]
        if audio_path is not None:
            cmd += ["-map", "1:a:0", "-c:a", audio_codec, "-b:a", audio_bitrate]
            if audio_rate:
                cmd += ["-ar", str(audio_rate)]
            if audio_channels:
                cmd += ["-ac", str(audio_channels)]
        cmd += [*BITEXACT, "-movflags", "+faststart", file_argument(self._tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        self._check(frame)
        assert self._proc.stdin is not None
        try:
            if self._yuv444:
                for plane in rgb_to_yuv444(frame):
                    self._proc.stdin.write(plane.tobytes())
            else:
                self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.abort()
            raise EncoderError(self.path, "ffmpeg exited while frames were being written") from None
        self.frames_written += 1

    def close(self) -> Path:
        _finish(self._proc, self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop the encoder and remove the partial output."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()
        self._tmp.unlink(missing_ok=True)


class _AudioTrack:
    """Float samples (N,) or (N, C) in [-1, 1] encoded into a PyAV container's stream, written
    in pieces (interleaved with video) or at once; PyAV cuts them into the codec's frames."""

    def __init__(
        self, container, samples: np.ndarray, rate: int | None, codec: str, bitrate: int
    ) -> None:
        audio = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        self.planar = np.ascontiguousarray(audio.reshape(len(audio), -1).T)
        if rate is None:
            raise ValueError("audio needs its sample rate")
        self.rate, self.codec, self.container, self.written = rate, codec, container, 0
        self.layout = "mono" if len(self.planar) == 1 else "stereo"
        self.stream = container.add_stream(codec, rate=rate)
        ctx = self.stream.codec_context
        ctx.layout, ctx.format, ctx.bit_rate = self.layout, "fltp", bitrate
        ctx.flags |= av.codec.context.Flags.bitexact

    def write_until(self, seconds: float) -> None:
        end = min(self.planar.shape[1], round(seconds * self.rate))
        if end > self.written:
            chunk = self.planar[:, self.written : end]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate, frame.pts = self.rate, self.written
            self.container.mux(self.stream.encode(frame))
            self.written = end

    def finish(self) -> None:
        self.write_until(self.planar.shape[1] / self.rate)
        self.container.mux(self.stream.encode(None))


class PyAVVideoWriter(_FrameWriter):
    """``VideoWriter`` without a subprocess: libx264 (and the audio encoder) in this process.

    Same settings (crf, preset, pix_fmt, x264 threads), bit-exact muxer and encoder flags, and
    the same guarantee: the output appears only when ``close()`` succeeds. It saves the ffmpeg
    start-up and pipe copies per file (most of the cost of a short clip); the encoding itself
    then runs on the caller's thread. Audio, when given, is float samples (N,) or (N, C) at
    ``audio_rate``, muxed interleaved with the frames. The codecs are the pinned PyAV wheel's
    own, so the bytes do not depend on the system's ffmpeg build.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float | str,
        crf: int = 18,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
        threads: int = 1,
        audio: np.ndarray | None = None,
        audio_rate: int | None = None,
        audio_codec: str = "aac",
        audio_bitrate: int = 128_000,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _temp_path(self.path)
        self.width, self.height = width, height
        self._pix_fmt = pix_fmt
        self.frames_written = 0
        self._audio: _AudioTrack | None = None
        options = {"fflags": "+bitexact", "movflags": "+faststart"}
        try:
            self._container = av.open(str(self._tmp), "w", container_options=options)
        except av.FFmpegError as error:
            self._tmp.unlink(missing_ok=True)
            raise EncoderError(self.path, f"cannot open for writing: {error}") from error
        try:
            rate = Fraction(str(fps))
            self._stream = self._container.add_stream("libx264", rate=rate)
            ctx = self._stream.codec_context
            ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
            ctx.time_base = 1 / rate
            ctx.thread_count = threads
            ctx.flags |= av.codec.context.Flags.bitexact
            ctx.options = {"crf": str(crf), "preset": preset, "x264-params": f"threads={threads}"}
            ctx.open()
            if audio is not None:
                self._audio = _AudioTrack(
                    self._container, audio, audio_rate, audio_codec, audio_bitrate
                )
            self._rate = rate
        except (av.FFmpegError, ValueError) as error:
            self.abort()
            raise EncoderError(self.path, f"libx264 (PyAV) failed to start: {error}") from error

    def _mux(self, frame: av.VideoFrame | None) -> None:
        try:
            self._container.mux(self._stream.encode(frame))
        except av.FFmpegError as error:
            self.abort()
            raise EncoderError(self.path, f"libx264 (PyAV) failed: {error}") from error

    def write(self, frame: np.ndarray) -> None:
        self._check(frame)
        if self._pix_fmt == "yuv444p":  # one cv2.transform, 0.15 ms where swscale took 0.70
            video = av.VideoFrame(self.width, self.height, "yuv444p")
            for plane, values in zip(video.planes, rgb_to_yuv444(frame), strict=True):
                view = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                view[:, : self.width] = values
        else:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            # Bicubic, as the ffmpeg CLI's auto-inserted scaler: the same YUV as ``VideoWriter``.
            video = rgb.reformat(format=self._pix_fmt, interpolation="BICUBIC")
        video.pts = self.frames_written
        self._mux(video)
        self.frames_written += 1
        if self._audio is not None:  # interleaved: the audio up to this frame's end
            self._mux_audio(lambda: self._audio.write_until(self.frames_written / self._rate))

    def _mux_audio(self, step) -> None:
        try:
            step()
        except av.FFmpegError as error:
            self.abort()
            raise EncoderError(self.path, f"{self._audio.codec} (PyAV) failed: {error}") from error

    def close(self) -> Path:
        self._mux(None)
        if self._audio is not None:
            self._mux_audio(self._audio.finish)
        try:
            self._container.close()
        except av.FFmpegError as error:
            self._tmp.unlink(missing_ok=True)
            raise EncoderError(self.path, f"writing the mp4 failed: {error}") from error
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the encoder and remove the partial output."""
        with contextlib.suppress(av.FFmpegError):
            self._container.close()
        self._tmp.unlink(missing_ok=True)


def encode_audio_inprocess(
    samples: np.ndarray,
    sample_rate: int,
    path: str | Path,
    codec: str = "aac",
    bitrate: int = 128_000,
) -> Path:
    """``encode_audio`` through the pinned PyAV wheel's encoders (M4A/MP4 by the suffix): the
    same bytes on any machine with the same wheel, whatever its ffmpeg."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        muxer = "ipod" if path.suffix == ".m4a" else "mp4"  # as the ffmpeg CLI picks
        with av.open(str(tmp), "w", format=muxer, container_options={"fflags": "+bitexact"}) as out:
            track = _AudioTrack(out, samples, sample_rate, codec, bitrate)
            track.finish()
    except (av.FFmpegError, ValueError) as error:
        tmp.unlink(missing_ok=True)
        raise EncoderError(path, f"{codec} (PyAV) failed: {error}") from error
    os.replace(tmp, path)
    return path


def encode_audio(
    samples: np.ndarray,
    sample_rate: int,
    path: str | Path,
    codec: str = "pcm_s16le",
    out_rate: int | None = None,
    bitrate: str = "128k",
) -> Path:
    """Encode float samples in [-1, 1], shape (N,) or (N, C), to ``path`` (WAV, M4A, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = np.asarray(samples, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    tmp = _temp_path(path)
    cmd = [require_tool("ffmpeg"), "-nostdin", "-y", "-loglevel", "error"]
    cmd += ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0"]
    cmd += ["-c:a", codec]
    if not codec.startswith("pcm_"):
        cmd += ["-b:a", bitrate]
    if out_rate:
        cmd += ["-ar", str(out_rate)]
    cmd += [*BITEXACT, file_argument(tmp)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _finish(proc, tmp, path, np.clip(audio, -1.0, 1.0).tobytes())
    return path
