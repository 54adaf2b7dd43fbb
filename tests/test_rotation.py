"""Rotation metadata: a clip stored sideways with a display matrix (as phones record) decodes
upright, as ffmpeg shows it, in preprocessing and in generation's video reader. The clips are
the project's sample MEAD clip and copies of it made with the installed ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from eamm.config import PreprocessParams, SampleDataParams, load_section
from eamm.face.landmarks import FaceModels, make_backend
from eamm.generate import aligned_frames
from eamm.media import require_tool
from eamm.preprocess import preprocess_clip
from eamm.sample.dataset import plan, write_clip
from eamm.video.decode import decode_frames
from eamm.video.warp import _plane
from tests.conftest import ROOT


def ffmpeg(*args: str) -> subprocess.CompletedProcess:
    cmd = [require_tool("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", *args]
    return subprocess.run(cmd, capture_output=True)


def with_display_rotation(src: Path, dst: Path, degrees: int) -> Path:
    """A stream copy of ``src`` that players show turned ``degrees`` counterclockwise:
    ``-display_rotation`` (ffmpeg >= 6), else the ``rotate`` tag older muxers turn into the
    display matrix."""
    done = ffmpeg("-display_rotation:v:0", str(degrees), "-i", str(src), "-c", "copy", str(dst))
    if done.returncode != 0:
        tag = f"rotate={degrees % 360}"
        done = ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", tag, str(dst))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return dst


def planes(path: Path) -> list[list[np.ndarray]]:
    """The Y, U and V planes of every decoded frame (no colour conversion in between)."""
    return [[_plane(p).copy() for p in f.planes[:3]] for f in decode_frames(path)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The upright sample clip (768x432) and a phone-style copy: the frames stored turned 90
    degrees clockwise (lossless, so no pixel changes), with a display matrix turning them back."""
    root = tmp_path_factory.mktemp("rotation")
    sample = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clip = next(c for c in plan(sample) if c.dataset == "mead")
    write_clip(clip, root)
    upright = root / clip.video
    stored = root / "stored_sideways.mp4"
    done = ffmpeg(
        *("-i", str(upright), "-vf", "transpose=clock", "-c:v", "libx264", "-qp", "0"),
        *("-pix_fmt", "yuv420p", "-c:a", "copy", str(stored)),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return {
        "upright": upright,
        "phone": with_display_rotation(stored, root / "phone.mp4", 90),
    }


def test_phone_clip_decodes_to_the_upright_frames(clips):
    upright, phone = planes(clips["upright"]), planes(clips["phone"])
    assert len(phone) == len(upright) == 43
    assert phone[0][0].shape == (432, 768)
    for ours, truth in zip(phone, upright, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(ours, truth, strict=True))


@pytest.mark.parametrize("degrees", [90, 180, -90])
def test_display_rotation_turns_frames_as_ffmpeg_shows_them(clips, tmp_path, degrees):
    """Each decoded plane is the upright one turned counterclockwise (np.rot90), and the same
    bytes the ffmpeg CLI decodes (it applies the matrix by default)."""
    path = with_display_rotation(clips["upright"], tmp_path / "turned.mp4", degrees)
    turned, upright = planes(path), planes(clips["upright"])
    for ours, truth in zip(turned, upright, strict=True):
        assert all(
            np.array_equal(a, np.rot90(b, degrees // 90)) for a, b in zip(ours, truth, strict=True)
        )
    shown = ffmpeg("-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-")
    assert shown.stdout == b"".join(p.tobytes() for frame in turned for p in frame)


def test_preprocessing_and_generation_see_the_phone_clip_upright(clips, tmp_path):
    """Preprocessing finds the face and writes the upright clip's outputs; generation's reader
    (emotion and pose videos) aligns the same frames."""
    models = FaceModels.from_params(PreprocessParams().landmarks)
    results = {
        name: preprocess_clip(clips[name], tmp_path / name, models=models)
        for name in ("upright", "phone")
    }
    assert results["phone"].faces_detected == results["upright"].faces_detected == 1
    for name in ("landmarks.npy", "pose.npy", "mfcc.npy"):
        truth, ours = (np.load(tmp_path / k / name) for k in ("upright", "phone"))
        assert np.array_equal(ours, truth, equal_nan=True), name
    params = PreprocessParams()
    backend = make_backend(params.landmarks.backend, params.landmarks.fan_weights_dir)
    aligned = [
        np.stack(list(aligned_frames(clips[k], 64, params, models, backend)))
        for k in ("upright", "phone")
    ]
    models.close()
    assert np.array_equal(aligned[0], aligned[1])


@pytest.mark.fixtures
def test_a_clip_stored_upside_down_without_metadata_is_refused(fixtures_dir, tmp_path):
    """LRW's real clip turned 180 degrees with no display matrix (flipped alike): the detector
    finds it on one head frame, the mesh fits an upright face to it anyway, and the clip was
    written 'ok' with upside-down crops, landmarks on the wrong features and a pose of
    nonsense (exit 0). Now one line, its own code. (Most turned sample clips are "no face": the
    detector does not find them.)"""
    from eamm.preprocess.errors import UpsideDownError

    turned = tmp_path / "turned.mp4"
    source = fixtures_dir / "lrw" / "lipread_mp4" / "ABOUT" / "train" / "ABOUT_00001.mp4"
    done = ffmpeg("-i", str(source), "-vf", "vflip,hflip", "-c:a", "copy", str(turned))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    with pytest.raises(UpsideDownError) as refused:
        preprocess_clip(turned, tmp_path / "out")
    assert refused.value.code == "upside_down"
    assert str(refused.value) == (
        f"{turned}: the face is upside down in the first 8 frames (stored turned, with no "
        "rotation metadata): rotate the video, or set its rotation"
    )
    assert not (tmp_path / "out").exists()
    assert preprocess_clip(source, tmp_path / "upright").faces_detected == 1


def test_decoding_an_upright_clip_leaves_no_reference_cycle(clips):
    """PyAV's side-data objects tie a frame into a cycle; an upright clip must not touch them,
    or each clip's decoder buffers stay until a full collection (10 MiB a 1080p clip)."""
    import gc

    import av

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        frames = sum(1 for _ in decode_frames(clips["upright"]))
        gc.collect()
        cyclic = [o for o in gc.garbage if isinstance(o, av.VideoFrame)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert frames == 43 and cyclic == []
