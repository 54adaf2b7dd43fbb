"""Which pixels and which stream the decoder gives: an anamorphic clip (sample aspect ratio not
1:1) decodes to square pixels, as players show it, so preprocessing sees the face unsqueezed;
a square-pixel clip decodes byte for byte as before; a file with a still picture (cover art) as
well as the video decodes the video. The clips are the project's sample MEAD clip (768x432,
30 fps, 43 frames) and copies of it made with the installed ffmpeg."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from eamm.config import PreprocessParams, SampleDataParams, load_section
from eamm.face.landmarks import FaceModels
from eamm.media import probe, require_tool
from eamm.media.probe import square_pixel_size
from eamm.preprocess import preprocess_clip
from eamm.sample.dataset import plan, write_clip
from eamm.video.decode import (
    NoVideoStreamError,
    decode_frames,
    open_video,
    stream_info,
)
from eamm.video.warp import _plane
from tests.conftest import ROOT

SIZE = (768, 432)
FRAMES = 43


def ffmpeg(*args: str) -> None:
    cmd = [require_tool("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", *args]
    done = subprocess.run(cmd, capture_output=True)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def turned_copy(src: Path, dst: Path) -> Path:
    """A stream copy of ``src`` with a display matrix turning it a quarter turn: set by
    ``-display_rotation`` (ffmpeg >= 6), else by the ``rotate`` tag older muxers turn into one."""
    try:
        ffmpeg("-display_rotation:v:0", "90", "-i", str(src), "-c", "copy", str(dst))
    except AssertionError:
        ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(dst))
    return dst


def planes(path: Path) -> list[list[np.ndarray]]:
    return [[_plane(p).copy() for p in f.planes[:3]] for f in decode_frames(path)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The sample clip, anamorphic copies of it (stored half as wide with SAR 2:1, half as tall
    with SAR 1:2), a copy flagged SAR 1:1, and files holding a still picture beside it."""
    root = tmp_path_factory.mktemp("streams")
    sample = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clip = next(c for c in plan(sample) if c.dataset == "mead")
    write_clip(clip, root)
    square = root / clip.video
    paths = {"square": square}
    x264 = ("-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", "-c:a", "copy")
    for name, vf in (
        ("wide", "scale=384:432,setsar=2/1"),
        ("tall", "scale=768:216,setsar=1/2"),
        ("sar1", "setsar=1/1"),
    ):
        paths[name] = root / f"{name}.mp4"
        ffmpeg("-i", str(square), "-vf", vf, *x264, str(paths[name]))
    # the squeezed clip shown in square pixels by the ffmpeg CLI (the reference for "wide")
    paths["wide_square"] = root / "wide_square.mp4"
    widen = ("-vf", "scale=768:432,setsar=1")
    ffmpeg("-i", str(paths["wide"]), *widen, *x264, str(paths["wide_square"]))

    still, big = root / "still.png", root / "big.png"
    ffmpeg("-i", str(square), "-frames:v", "1", str(still))
    ffmpeg("-i", str(square), "-frames:v", "1", "-vf", "scale=1024:1024", str(big))
    # a one-frame picture stream first, the video second and default: what ffmpeg 5's Matroska
    # muxer makes of a cover picture mapped first (it drops the attached_pic flag)
    paths["still_first"] = root / "still_first.mkv"
    ffmpeg(
        *("-i", str(still), "-i", str(square), "-map", "0", "-map", "1:v", "-map", "1:a"),
        *("-c:v:0", "png", "-c:v:1", "copy", "-c:a", "copy"),
        *("-disposition:v:0", "0", "-disposition:v:1", "default", str(paths["still_first"])),
    )
    # the same video and sound without the picture, timestamps kept (the reference)
    paths["alone"] = root / "alone.mkv"
    ffmpeg(
        *("-copyts", "-i", str(paths["still_first"]), "-map", "0:v:1", "-map", "0:a"),
        *("-c", "copy", str(paths["alone"])),
    )
    # a cover picture (attached_pic) with more pixels than the video, the video not default
    attach = ("-attach", str(big), "-metadata:s:t", "mimetype=image/png")
    paths["cover"] = root / "cover.mkv"
    no_default = ("-disposition:v:0", "0")
    ffmpeg("-i", str(square), *attach, "-map", "0", "-c", "copy", *no_default, str(paths["cover"]))
    # sound with a cover picture and no video
    paths["audio_cover"] = root / "audio_cover.mkv"
    ffmpeg("-i", str(square), *attach, "-map", "0:a", "-c", "copy", str(paths["audio_cover"]))
    return paths


@pytest.fixture(scope="module")
def models():
    face = FaceModels.from_params(PreprocessParams().landmarks)
    yield face
    face.close()


@pytest.mark.parametrize(
    ("width", "height", "sar", "size"),
    [
        (384, 432, Fraction(2), (768, 432)),
        (768, 216, Fraction(1, 2), (768, 432)),
        (720, 576, Fraction(64, 45), (1024, 576)),  # PAL 16:9
        (720, 480, Fraction(10, 11), (720, 528)),  # NTSC 4:3: taller, never narrower
        (100, 100, Fraction(4, 3), (134, 100)),  # rounded to even
        (768, 432, None, (768, 432)),
        (768, 432, Fraction(1), (768, 432)),
        (768, 432, Fraction(0), (768, 432)),
    ],
)
def test_square_pixel_size_scales_the_short_side_up(width, height, sar, size):
    assert square_pixel_size(width, height, sar) == size


@pytest.mark.parametrize(("name", "stored"), [("wide", (384, 432)), ("tall", (768, 216))])
def test_anamorphic_clip_decodes_to_square_pixels(clips, name, stored):
    """Frames, stream info and probe all give the square-pixel size; the frames are the ones
    the ffmpeg CLI's own bicubic ``scale`` gives (within rounding)."""
    container, stream = open_video(clips[name])
    info = stream_info(stream)
    container.close()
    assert (info.width, info.height) == SIZE and info.sample_aspect_ratio is not None
    facts = probe(clips[name]).video
    assert (facts.width, facts.height) == SIZE
    assert (facts.stored_width, facts.stored_height) == stored
    frames = list(decode_frames(clips[name]))
    assert len(frames) == FRAMES
    assert {(f.width, f.height) for f in frames} == {SIZE}
    if name == "wide":
        ours, reference = planes(clips[name]), planes(clips["wide_square"])
        for frame, truth in zip(ours, reference, strict=True):
            diff = np.abs(frame[0].astype(int) - truth[0].astype(int))
            assert diff.mean() < 1.0 and diff.max() <= 8


def test_anamorphic_clip_composes_with_a_display_matrix(clips, tmp_path):
    """The SAR describes the stored picture, so frames are widened first and turned after: the
    turned clip's planes are the widened ones rotated a quarter turn."""
    turned = turned_copy(clips["wide"], tmp_path / "turned.mp4")
    ours, upright = planes(turned), planes(clips["wide"])
    assert len(ours) == FRAMES and ours[0][0].shape == (768, 432)
    turns = [k for k in (1, -1) if np.array_equal(ours[0][0], np.rot90(upright[0][0], k))]
    assert len(turns) == 1
    for frame, truth in zip(ours, upright, strict=True):
        assert all(
            np.array_equal(a, np.rot90(b, turns[0])) for a, b in zip(frame, truth, strict=True)
        )


def test_filtered_frames_keep_their_colour_tags(clips, tmp_path):
    """A BT.709 anamorphic clip, upright and turned: the widened (and turned) frames carry the
    decoder's colour tags, so their crops convert to RGB as BT.709, not as untagged BT.601."""
    tagged = tmp_path / "bt709.mp4"
    ffmpeg(
        *("-i", str(clips["wide"]), "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p"),
        *("-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"),
        str(tagged),
    )
    turned = turned_copy(tagged, tmp_path / "bt709_turned.mp4")
    tags = ("colorspace", "color_range", "color_primaries", "color_trc")
    with av.open(str(tagged)) as container:
        plain = next(container.decode(video=0))
    assert (plain.colorspace, plain.color_primaries) == (1, 1)
    for path, shape in ((tagged, SIZE), (turned, SIZE[::-1])):
        for frame in decode_frames(path):
            assert (frame.width, frame.height) == shape
            assert [getattr(frame, t) for t in tags] == [getattr(plain, t) for t in tags]


def _frame_points(out: Path, transform: tuple[float, ...]) -> np.ndarray:
    """The clip's landmarks (crop pixels) mapped back to frame pixels."""
    points = np.load(out / "landmarks.npy")
    matrix = np.asarray(transform).reshape(2, 3)
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_preprocessing_finds_the_anamorphic_face_unsqueezed(clips, models, tmp_path):
    """The crops of the anamorphic clip show the face as the square-pixel clip does: the
    landmarks land where the square clip's do (frame pixels, within a few pixels), the eye
    distance included; squeezed, the face was half as wide."""
    results = {
        name: preprocess_clip(clips[name], tmp_path / name, models=models)
        for name in ("square", "wide", "tall")
    }
    truth = _frame_points(tmp_path / "square", results["square"].transform)
    for name in ("wide", "tall"):
        result = results[name]
        assert (result.width, result.height) == SIZE
        assert result.num_frames == results["square"].num_frames
        assert result.faces_detected == 1
        ours = _frame_points(tmp_path / name, result.transform)
        assert np.nanmedian(np.abs(ours - truth)) < 2.0, name
        assert np.nanmax(np.abs(ours - truth)) < 8.0, name
        eyes = [
            np.linalg.norm(p[:, 36:42].mean(1) - p[:, 42:48].mean(1), axis=1) for p in (ours, truth)
        ]
        assert np.allclose(eyes[0], eyes[1], rtol=0.05), name


@pytest.mark.parametrize("name", ["square", "sar1"])
def test_square_pixel_clip_frames_are_the_decoders_own(clips, name):
    """No SAR or SAR 1:1: each frame is the plain PyAV decode, byte for byte (DVC hashes what
    preprocessing writes from them)."""
    with av.open(str(clips[name])) as container:
        plain = [f.to_ndarray() for f in container.decode(video=0)]
    ours = [f.to_ndarray() for f in decode_frames(clips[name])]
    assert len(ours) == len(plain) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(ours, plain, strict=True))


@pytest.mark.parametrize("name", ["still_first", "cover"])
def test_the_video_is_decoded_not_the_still_picture(clips, name):
    """The stream ffmpeg maps: the default one of the most pixels, never an attached picture
    (``cover``'s is larger than the video); probe's ``video`` is the same stream."""
    with av.open(str(clips[name])) as container:
        assert len(container.streams.video) == 2
    container, stream = open_video(clips[name])
    index = stream.index
    container.close()
    assert probe(clips[name]).video.index == index
    frames = list(decode_frames(clips[name]))
    assert len(frames) == FRAMES
    assert (frames[0].width, frames[0].height) == SIZE
    truth = [f.to_ndarray() for f in decode_frames(clips["square"])]
    assert all(np.array_equal(f.to_ndarray(), t) for f, t in zip(frames, truth, strict=True))


def test_preprocessing_a_file_with_a_still_picture_first(clips, models, tmp_path):
    """The bug's file: stream 0 one still frame, stream 1 the video; it was refused as too
    short (one frame). Its outputs are those of its video and sound remuxed without the still."""
    alone = preprocess_clip(clips["alone"], tmp_path / "alone", models=models)
    ours = preprocess_clip(clips["still_first"], tmp_path / "still_first", models=models)
    assert ours.input_frames == alone.input_frames == FRAMES
    assert ours.num_frames == alone.num_frames > 30
    assert (ours.width, ours.height) == SIZE and ours.faces_detected == 1
    for name in ("landmarks.npy", "pose.npy", "mfcc.npy"):
        truth, got = (np.load(tmp_path / k / name) for k in ("alone", "still_first"))
        assert np.array_equal(got, truth, equal_nan=True), name


def test_a_cover_picture_alone_is_no_video(clips):
    with pytest.raises(NoVideoStreamError, match="only a still picture"):
        open_video(clips["audio_cover"])
    assert probe(clips["audio_cover"]).video is None
