"""The in-process H.264 writer (PyAV's libx264): same pixels as the ffmpeg writer, same bytes on
every run, and the same no-partial-file guarantee."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from eamm.config import PreprocessParams
from eamm.errors import MediaError
from eamm.media.encode import PyAVVideoWriter, VideoWriter
from eamm.preprocess.clip import crop_writer

SIZE = 64


def moving_frames(count: int = 20) -> list[np.ndarray]:
    """A smooth random texture that moves and changes colour: exercises motion search and chroma."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (SIZE // 4, SIZE // 4, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (SIZE * 2, SIZE * 2), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    frames = []
    for k in range(count):
        frame = texture[k : k + SIZE, 2 * k : 2 * k + SIZE].copy()
        frame[..., 0] = (frame[..., 0] // 2 + 4 * k + xx).astype(np.uint8)
        frame[..., 2] = (frame[..., 2] // 2 + yy).astype(np.uint8)
        frames.append(frame)
    return frames


def write(cls: type, path: Path, frames: list[np.ndarray], **kwargs: object) -> Path:
    with cls(path, SIZE, SIZE, 25, crf=10, preset="veryfast", **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == len(frames)
    return path


def decoded(path: Path) -> tuple[np.ndarray, str, Fraction]:
    """(RGB frames, pixel format, average frame rate) of the file's video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, stream.codec_context.pix_fmt, stream.average_rate


def test_pyav_bundles_libx264():
    assert "libx264" in av.codecs_available


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p"])
def test_same_bytes_every_run_and_same_pixels_as_the_ffmpeg_writer(tmp_path, pix_fmt):
    frames = moving_frames()
    ours = [write(PyAVVideoWriter, tmp_path / f"a{k}.mp4", frames, pix_fmt=pix_fmt) for k in (0, 1)]
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in ours}
    assert len(digests) == 1
    cli = write(VideoWriter, tmp_path / "cli.mp4", frames, pix_fmt=pix_fmt)
    mine, fmt, rate = decoded(ours[0])
    theirs, _, _ = decoded(cli)
    assert mine.shape == (20, SIZE, SIZE, 3) and fmt == pix_fmt and rate == 25
    # Bicubic RGB->YUV as the ffmpeg CLI: identical here (bilinear would differ by up to ~12).
    diff = np.abs(mine.astype(int) - theirs)
    print(f"{pix_fmt}: max |PyAV - ffmpeg| = {diff.max()}, mean {diff.mean():.4f}")
    assert diff.max() <= 2 and diff.mean() < 0.05
    mse = ((mine.astype(float) - np.stack(frames)) ** 2).mean()
    assert 10 * np.log10(255.0**2 / mse) > 30  # crf 10: near-lossless


def test_fractional_frame_rate(tmp_path):
    frames = moving_frames(5)
    with PyAVVideoWriter(tmp_path / "ntsc.mp4", SIZE, SIZE, "30000/1001") as writer:
        for frame in frames:
            writer.write(frame)
    frames, _, rate = decoded(tmp_path / "ntsc.mp4")
    assert len(frames) == 5 and rate == Fraction(30000, 1001)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_no_file_left_on_error(tmp_path):
    frame = moving_frames(1)[0]
    boom = pytest.raises(RuntimeError, match="boom")
    with boom, PyAVVideoWriter(tmp_path / "x.mp4", SIZE, SIZE, 25) as writer:
        writer.write(frame)
        raise RuntimeError("boom")
    bad_shape = pytest.raises(ValueError, match=r"frame must be uint8 \(64, 64, 3\)")
    with bad_shape, PyAVVideoWriter(tmp_path / "y.mp4", SIZE, SIZE, 25) as writer:
        writer.write(np.zeros((SIZE, SIZE + 2, 3), np.uint8))
    with pytest.raises(MediaError, match=r"libx264 \(PyAV\) failed to start"):
        PyAVVideoWriter(tmp_path / "z.mp4", SIZE, SIZE, 25, preset="no-such-preset")
    assert leftovers(tmp_path) == []


def test_crop_writer_follows_the_encoder_param(tmp_path):
    assert PreprocessParams().encoder == "pyav"
    pyav = crop_writer(tmp_path / "a.mp4", PreprocessParams(crop_size=64))
    ffmpeg = crop_writer(tmp_path / "b.mp4", PreprocessParams(crop_size=64, encoder="ffmpeg"))
    assert isinstance(pyav, PyAVVideoWriter) and isinstance(ffmpeg, VideoWriter)
    frame = moving_frames(1)[0]
    for writer in (pyav, ffmpeg):
        with writer:
            writer.write(frame)
    assert leftovers(tmp_path) == ["a.mp4", "b.mp4"]
