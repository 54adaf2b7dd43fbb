"""Per-clip preprocessing on real media: the data contract, alignment, pose and typed errors."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from eamm.audio import NoAudioError
from eamm.config import PreprocessParams
from eamm.errors import MediaError
from eamm.face.ibug68 import eye_and_mouth_centres
from eamm.face.landmarks import FaceModels, MediapipeLandmarks
from eamm.face.pose import pose_row
from eamm.face.similarity import Similarity
from eamm.face.template import load_template
from eamm.preprocess import preprocess_clip
from eamm.preprocess.clip import OUTPUT_FILES, clip_transform
from eamm.preprocess.errors import AVMismatchError, MultipleFacesError, NoFaceError, TooShortError
from eamm.video.decode import (
    NoVideoStreamError,
    UnreadableVideoError,
    decode_frames,
    open_video,
    resample_fps,
    stream_info,
)
from eamm.video.warp import _plane
from tests.conftest import ROOT, VENV_BIN

MEAD = "mead/M030/video/front/sad/level_3/001.mp4"
MEAD_AUDIO = "mead/M030/audio/sad/level_3/001.m4a"
LRW = "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"


@pytest.fixture(scope="module")
def models():
    face = FaceModels.from_params(PreprocessParams().landmarks)
    yield face
    face.close()


@pytest.fixture(scope="module")
def mead_clip(fixtures_dir, tmp_path_factory, models):
    out = tmp_path_factory.mktemp("mead") / "clip"
    result = preprocess_clip(
        fixtures_dir / MEAD, out, audio=fixtures_dir / MEAD_AUDIO, models=models
    )
    return result, out


@pytest.fixture(scope="module")
def lrw_m003(fixtures_dir, tmp_path_factory, models):
    out = tmp_path_factory.mktemp("lrw") / "clip"
    params = PreprocessParams(template=str(fixtures_dir / "M003_template.npy"))
    return preprocess_clip(fixtures_dir / LRW, out, params=params, models=models), out


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def read_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def angle_mae(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(ours[:, :3] - reference[:, :3]).mean(axis=0)


@pytest.mark.fixtures
def test_fps_normalisation_selects_the_frames_ffmpeg_fps_filter_selects(fixtures_dir):
    path = fixtures_dir / MEAD
    ours = []
    for frame in resample_fps(decode_frames(path), 25, fps_in := 30):
        data = b"".join(_plane(p).tobytes() for p in frame.planes)
        ours.append(hashlib.md5(data).hexdigest())
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", "fps=25", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = [line.split(",")[-1].strip() for line in out.splitlines() if line.startswith("0,")]
    assert fps_in == 30 and len(ours) == 93
    assert ours == theirs


@pytest.mark.fixtures
def test_mead_clip_outputs_are_consistent(mead_clip):
    result, out = mead_clip
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert (result.input_frames, result.num_frames, result.num_windows) == (112, 93, 93)
    assert result.audio_source == "file" and result.mfcc_end_pad == 81
    frames = read_frames(out / "frames.mp4")
    assert frames.shape == (93, 256, 256, 3)
    mfcc = np.load(out / "mfcc.npy")
    landmarks = np.load(out / "landmarks.npy")
    pose = np.load(out / "pose.npy")
    assert mfcc.shape == (93, 28, 13) and mfcc.dtype == np.float32
    assert landmarks.shape == (93, 68, 2) and landmarks.dtype == np.float32
    assert pose.shape == (93, 7) and pose.dtype == np.float32
    assert np.isfinite(landmarks).all() and np.isfinite(pose).all()
    assert landmarks.min() >= 0 and landmarks.max() < 256
    import soundfile as sf

    audio, rate = sf.read(out / "audio.wav", dtype="int16")
    assert rate == 16000 and audio.ndim == 1 and len(audio) == 93 * 640
    # The crop is the face: the detector finds one face covering the crop's centre.
    face = FaceModels()
    boxes = face.detect(frames[40])
    face.close()
    assert len(boxes) == 1
    box = boxes[0]
    assert box.x0 < 128 < box.x1 and box.y0 < 140 < box.y1 and box.x1 - box.x0 > 90


@pytest.mark.fixtures
def test_default_template_puts_eyes_and_mouth_where_eamm_does(mead_clip, fixtures_dir):
    _, out = mead_clip
    ours = eye_and_mouth_centres(np.median(np.load(out / "landmarks.npy"), axis=0))
    eamm = eye_and_mouth_centres(np.load(fixtures_dir / "M003_template.npy"))
    distances = np.linalg.norm(ours - eamm, axis=1)
    print("eye/eye/mouth centre distance to M003 (px):", distances.round(2))
    assert (distances < 4.0).all()


@pytest.mark.fixtures
def test_lrw_alignment_with_m003_is_near_identity(lrw_m003, fixtures_dir):
    result, out = lrw_m003
    assert result.num_frames == 29 and result.num_windows == 29
    fit = Similarity.from_matrix(np.array(result.transform).reshape(2, 3))
    centre = fit.apply(np.array([[128.0, 128.0]]))[0] - 128.0
    assert np.linalg.norm(centre) < 3.0
    assert abs(fit.scale - 1.0) < 0.03
    assert abs(np.degrees(fit.angle_rad)) < 2.0
    ours = read_frames(out / "frames.mp4").astype(np.float64)
    reference = np.stack(
        [
            cv2.cvtColor(
                cv2.imread(str(fixtures_dir / f"lrw_reference/ABOUT_00001/frames/{k}.png")),
                cv2.COLOR_BGR2RGB,
            )
            for k in range(29)
        ]
    ).astype(np.float64)
    mse = ((ours - reference) ** 2).mean(axis=(1, 2, 3))
    psnr = float((10 * np.log10(255.0**2 / mse)).mean())
    print(f"mean PSNR of our crops vs EAMM's frames: {psnr:.2f} dB")
    assert psnr > 23.5


@pytest.mark.fixtures
def test_lrw_pose_matches_eamm_3ddfa_rows(lrw_m003, fixtures_dir):
    _, out = lrw_m003
    mae = angle_mae(
        np.load(out / "pose.npy"), np.load(fixtures_dir / "lrw_reference/ABOUT_00001/pose.npy")
    )
    print("LRW pose MAE yaw/pitch/roll (deg):", mae.round(2))
    assert mae[0] < 5 and mae[1] < 8 and mae[2] < 5


class CountingModels:
    """The shared models with the face detector's calls counted: the whole frame's
    (``detections``) and the still mesh's (``still_detections``, LiteRT engine)."""

    def __init__(self, models: FaceModels) -> None:
        self._models, self.detections, self.still_detections = models, 0, 0

    def detect(self, rgb: np.ndarray) -> list:
        self.detections += 1
        return self._models.detect(rgb)

    def still_roi(self, rgb: np.ndarray) -> object:
        self.still_detections += 1
        return self._models.still_roi(rgb)

    def mesh(self, rgb: np.ndarray, roi: object = None) -> object:
        if roi is None:
            self.still_detections += 1
        return self._models.mesh(rgb, roi)

    def __getattr__(self, name: str) -> object:
        return getattr(self._models, name)


@pytest.mark.fixtures
@pytest.mark.parametrize("clip, template", [(LRW, "M003_template.npy"), (MEAD, "default")])
def test_detecting_on_the_first_frame_only_keeps_the_alignment(
    fixtures_dir, models, clip, template
):
    path = fixtures_dir / clip
    template = template if template == "default" else str(fixtures_dir / template)
    head = list(islice(resample_fps(decode_frames(path), 25, 25 if clip == LRW else 30), 8))
    fits, calls = {}, {}
    for boxes in ("every", "first"):
        params = PreprocessParams(template=template, detect_boxes=boxes)
        counting = CountingModels(models)
        points = load_template(params.template, 256)
        fits[boxes], faces = clip_transform(
            head, path, points, params, counting, MediapipeLandmarks()
        )
        calls[boxes] = counting.detections
        assert faces == 1
    assert calls == {"every": 8, "first": 1}
    centres = eye_and_mouth_centres(load_template(template, 256).astype(np.float64))
    moved = fits["first"].apply(centres) - fits["every"].apply(centres)
    moved = np.linalg.norm(moved, axis=1) / fits["every"].scale  # in crop pixels
    print(f"{clip}: eye/eye/mouth centres moved by {moved.round(2)} px (first vs every)")
    assert (moved < 1.5).all()


def head_rois_fits(path: Path, models: FaceModels, template: str = "default") -> tuple:
    """(similarity per head_rois setting, the still mesh's detector calls per setting)."""
    container, stream = open_video(path)
    fps = stream_info(stream).fps
    container.close()
    head = list(islice(resample_fps(decode_frames(path), 25, fps), 8))
    points = load_template(template, 256)
    fits, calls = {}, {}
    for rois in ("every", "first"):
        counting = CountingModels(models)
        params = PreprocessParams(template=template, head_rois=rois)
        fits[rois], _ = clip_transform(head, path, points, params, counting, MediapipeLandmarks())
        calls[rois] = counting.still_detections
    centres = eye_and_mouth_centres(points.astype(np.float64))
    moved = fits["first"].apply(centres) - fits["every"].apply(centres)
    return np.linalg.norm(moved, axis=1) / fits["every"].scale, calls


def test_the_still_mesh_reuses_its_first_region(sample_lrw_clip):
    """One detector call for the eight head crops instead of eight; the alignment stays within
    the spread the first-box reuse has (measured on 194 clips: centres 1.0 px apart on average,
    detect_boxes every/first 0.8 px; per-frame estimates jitter by 1.5 px)."""
    models = FaceModels(mesh_engine="litert")
    try:
        moved, calls = head_rois_fits(sample_lrw_clip, models)
    finally:
        models.close()
    print(f"sample LRW clip: centres moved by {moved.round(2)} px (head_rois first vs every)")
    assert calls == {"every": 8, "first": 1}
    assert (moved < 2.0).all()


@pytest.mark.fixtures
@pytest.mark.parametrize("clip", [LRW, MEAD])
def test_the_still_mesh_reusing_its_region_keeps_eamms_alignment(fixtures_dir, models, clip):
    moved, calls = head_rois_fits(fixtures_dir / clip, models)
    print(f"{clip}: centres moved by {moved.round(2)} px (head_rois first vs every)")
    assert calls == {"every": 8, "first": 1}
    assert (moved < 1.5).all()


@pytest.mark.fixtures
def test_portrait_pose_matches_3ddfa(fixtures_dir, models):
    ours, reference = [], []
    for image in sorted((fixtures_dir / "portraits").iterdir()):
        rgb = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
        mesh = models.mesh(rgb)
        assert mesh is not None, image
        ours.append(pose_row(mesh))
        reference.append(np.load(fixtures_dir / "poses" / f"{image.stem}.npy")[0])
    mae = angle_mae(np.array(ours), np.array(reference))
    print("portrait pose MAE yaw/pitch/roll (deg):", mae.round(2))
    assert len(ours) == 9
    assert mae[0] < 5 and mae[1] < 8 and mae[2] < 5


def test_mesh_maps_to_68_points_in_ibug_order(fixtures_dir, models):
    from eamm.sample.face import astronaut

    mesh = models.mesh(astronaut())
    points = MediapipeLandmarks().points68(astronaut(), mesh)
    right_eye, left_eye, mouth = eye_and_mouth_centres(points)
    assert points.shape == (68, 2)
    assert right_eye[0] < left_eye[0]  # subject's right eye is on the image's left
    assert mouth[1] > max(right_eye[1], left_eye[1]) + 20
    assert points[8, 1] == points[:17, 1].max()  # chin is the lowest jaw point


# --- errors: each on a file the test makes; nothing is left in the output folder ---------------


def expect_failure(error: type, match: str, video: Path, out: Path, **kwargs) -> None:
    with pytest.raises(error, match=match) as info:
        preprocess_clip(video, out, **kwargs)
    assert video.name in str(info.value)
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


@pytest.mark.fixtures
def test_zero_length_and_truncated_videos(tmp_path, fixtures_dir, models):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    expect_failure(UnreadableVideoError, "zero-length", empty, tmp_path / "o1", models=models)
    data = (fixtures_dir / MEAD).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    expect_failure(UnreadableVideoError, "truncated.mp4", truncated, tmp_path / "o2", models=models)


@pytest.mark.fixtures
def test_audio_only_file_has_no_video_stream(tmp_path, fixtures_dir, models):
    audio_only = tmp_path / "audio_only.m4a"
    shutil.copy(fixtures_dir / MEAD_AUDIO, audio_only)
    expect_failure(NoVideoStreamError, "no video stream", audio_only, tmp_path / "o", models=models)


@pytest.mark.fixtures
def test_no_audio_anywhere(tmp_path, fixtures_dir, models):
    silent = tmp_path / "silent.mp4"
    ffmpeg("-i", str(fixtures_dir / LRW), "-an", "-c:v", "copy", str(silent))
    expect_failure(NoAudioError, "no audio stream", silent, tmp_path / "o", models=models)


@pytest.mark.fixtures
def test_no_face(tmp_path, fixtures_dir, models):
    blank = tmp_path / "blank.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=256x256:r=25:d=1.2",
        "-i",
        str(fixtures_dir / LRW),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-shortest",
        str(blank),
    )
    expect_failure(
        NoFaceError, "no face in the first 8 frames", blank, tmp_path / "o", models=models
    )


@pytest.mark.fixtures
def test_two_faces_fail_or_take_the_largest(tmp_path, fixtures_dir, models):
    two = tmp_path / "two_faces.mp4"
    ffmpeg(
        "-i",
        str(fixtures_dir / LRW),
        "-filter_complex",
        "[0:v]split[a][b];[b]scale=192:192,pad=256:256:32:32[c];[a][c]hstack",
        str(two),
    )
    strict = PreprocessParams(on_multiple_faces="fail")
    expect_failure(MultipleFacesError, "2 faces", two, tmp_path / "o", models=models, params=strict)
    result = preprocess_clip(two, tmp_path / "ok", models=models)
    assert result.faces_detected == 2 and result.num_frames == 29
    assert result.transform[0] < 1.0  # the larger (unscaled) face was chosen


@pytest.mark.fixtures
def test_too_short_and_length_mismatch(tmp_path, fixtures_dir, models):
    short = tmp_path / "short.mp4"
    ffmpeg("-i", str(fixtures_dir / LRW), "-frames:v", "5", "-t", "0.2", str(short))
    expect_failure(TooShortError, "fewer than 7", short, tmp_path / "o1", models=models)
    long_audio = tmp_path / "long_audio.mp4"
    ffmpeg(
        "-i",
        str(fixtures_dir / LRW),
        "-i",
        str(fixtures_dir / "audio/sample1.mp3"),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        str(long_audio),
    )
    expect_failure(AVMismatchError, "audio is 11.3", long_audio, tmp_path / "o2", models=models)


@pytest.mark.fixtures
def test_cli_prints_summary_or_one_line_error(tmp_path, fixtures_dir):
    ok = subprocess.run(
        [
            str(VENV_BIN / "eamm"),
            "preprocess-clip",
            str(fixtures_dir / LRW),
            "--out",
            str(tmp_path / "ok"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "29 frames, 29 MFCC windows, face in 29/29 frames" in ok.stdout
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    fail = subprocess.run(
        [str(VENV_BIN / "eamm"), "preprocess-clip", str(bad), "--out", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fail.returncode == 2
    assert f"error: {bad}: unreadable video" in fail.stderr
    assert "Traceback" not in fail.stderr
    assert not (tmp_path / "bad").exists()


def test_fan_backend_refuses_to_start_without_local_weights(tmp_path):
    from eamm.errors import EammError
    from eamm.face.landmarks import make_backend

    with pytest.raises(EammError, match=r"FAN weights missing \(2DFAN4-cd938726ad\.zip"):
        make_backend("fan", str(tmp_path))
    with pytest.raises(EammError, match="fan_weights_dir must be set"):
        make_backend("fan", None)
    with pytest.raises(EammError, match="unknown landmark backend 'dlib'"):
        make_backend("dlib")


def test_an_out_folder_that_is_a_file_is_refused_and_kept(sample_lrw_clip, tmp_path):
    from eamm.errors import EammError

    taken = tmp_path / "out"
    taken.write_text("a user's file\n")
    with pytest.raises(EammError, match=r"out: is a file, not the clip's output folder"):
        preprocess_clip(sample_lrw_clip, taken)
    assert taken.read_text() == "a user's file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_holding_other_files_is_refused_and_kept(sample_lrw_clip, tmp_path, models):
    """The run replaces --out whole: a user's folder, here holding the input clip itself, was
    deleted with exit 0. An earlier run's outputs are still replaced."""
    from eamm.errors import EammError

    folder = tmp_path / "mine"
    (folder / "photos").mkdir(parents=True)
    clip = folder / "clip.mp4"
    shutil.copy(sample_lrw_clip, clip)
    (folder / "thesis.txt").write_text("important\n")
    listed = r"mine: holds files that are not a clip's outputs \(clip\.mp4, photos, thesis\.txt\)"
    with pytest.raises(EammError, match=listed):
        preprocess_clip(clip, folder, models=models)
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4", "photos", "thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    out, params = tmp_path / "out", PreprocessParams(crop_size=64)
    for _ in range(2):
        preprocess_clip(clip, out, params=params, models=models)
        assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)


def test_an_out_folder_that_cannot_be_written_is_one_line(sample_lrw_clip, tmp_path, models):
    from eamm.errors import EammError

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(EammError, match=r"a_file: cannot write the clip's output folder here \("):
        preprocess_clip(sample_lrw_clip, blocker / "clip", models=models)
    assert blocker.read_text() == "x"


def test_bad_separate_audio_names_the_audio_file(sample_lrw_clip, tmp_path, models):
    """The audio file is the one at fault: the length mismatch named the video, and an
    unreadable one was recorded with the catch-all code 'error'."""
    short = tmp_path / "short.m4a"
    ffmpeg("-i", str(sample_lrw_clip), "-vn", "-t", "0.3", str(short))
    with pytest.raises(AVMismatchError, match=rf"^{short}: audio is 0\.3"):
        preprocess_clip(sample_lrw_clip, tmp_path / "o1", audio=short, models=models)
    empty = tmp_path / "empty.m4a"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=rf"^{empty}: unreadable media") as err:
        preprocess_clip(sample_lrw_clip, tmp_path / "o2", audio=empty, models=models)
    assert err.value.code == "unreadable_audio"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.m4a", "short.m4a"]


def sliding_out(clip: Path, out: Path, start: int) -> Path:
    """``clip`` whose face slides out of the picture, 14 px a frame from frame ``start``."""
    slide = f"[1:v][0:v]overlay=x='if(lt(n,{start}),0,(n-{start})*14)':y=0:shortest=1"
    done = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(clip)),
            *("-f", "lavfi", "-i", "color=black:s=256x256:r=25", "-filter_complex", slide),
            *("-map", "0:a", "-c:a", "copy", str(out)),
        ],
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return out


def test_frames_whose_face_has_left_the_crop_have_no_face(sample_lrw_clip, tmp_path, monkeypatch):
    """A face sliding out of the picture: the mesh kept tracking it with up to 52 of its 68
    points outside the crop, rows valid, a frontal face's pose read as a 10-degree turn. Rows
    with more than ``MAX_POINTS_OUTSIDE`` points out are now NaN, as for no face."""
    import eamm.preprocess.clip as clip_module

    leaving = sliding_out(sample_lrw_clip, tmp_path / "leaving.mp4", 12)
    outside = {}
    for limit in (68, clip_module.MAX_POINTS_OUTSIDE):  # 68: every tracked face kept (before)
        monkeypatch.setattr(clip_module, "MAX_POINTS_OUTSIDE", limit)
        preprocess_clip(leaving, tmp_path / str(limit))
        points = np.load(tmp_path / str(limit) / "landmarks.npy")
        face = np.isfinite(points).all(axis=(1, 2))
        assert np.array_equal(face, np.isfinite(np.load(tmp_path / str(limit) / "pose.npy")).all(1))
        outside[limit] = ((points < 0) | (points >= 256)).any(axis=2).sum(axis=1), face
    (before, had), (after, has) = outside[68], outside[clip_module.MAX_POINTS_OUTSIDE]
    assert (before[had & ~has] > clip_module.MAX_POINTS_OUTSIDE).all() and (had & ~has).any()
    assert (after[has] <= clip_module.MAX_POINTS_OUTSIDE).all() and has[:12].all()


def test_a_clip_with_a_face_in_fewer_than_half_its_frames_is_refused(sample_lrw_clip, tmp_path):
    """The face gone after the first frames (a pan, the speaker leaving): written ``ok``
    with "face in 12/110 frames", and training drew mostly crops without a face from it."""
    from eamm.preprocess.clip import MIN_FACE_SHARE
    from eamm.preprocess.errors import FewFacesError

    leaving = sliding_out(sample_lrw_clip, tmp_path / "leaving.mp4", 3)
    with pytest.raises(FewFacesError) as refused:
        preprocess_clip(leaving, tmp_path / "out")
    assert refused.value.code == "few_faces" and MIN_FACE_SHARE == 0.5
    assert re.fullmatch(
        rf"{leaving}: a face in 1[0-4] of 29 frames, fewer than 50% \(none found, leaving the "
        r"picture or rolled past 90 degrees\): trim the clip to where the face shows",
        str(refused.value),
    )
    assert not (tmp_path / "out").exists()


def sample_cut_clip(root: Path) -> tuple[Path, list[Path]]:
    """(a clip cut at frame 15 from one sample identity to another at the same place, the two
    clips it joins): the sample's astronaut, then its hopper."""
    from eamm.config import SampleDataParams, load_section
    from eamm.sample.dataset import plan, write_clip

    sample = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    lrw = [c for c in plan(sample) if c.dataset == "lrw"]
    halves = [next(c for c in lrw if c.identity == name) for name in ("astronaut", "hopper")]
    for clip in halves:
        write_clip(clip, root)
    first, second = (root / c.video for c in halves)
    cut = root / "cut.mp4"
    join = "[0:v]trim=end_frame=15[a];[1:v]trim=start_frame=15,setpts=PTS-STARTPTS[b];[a][b]concat"
    done = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(first)),
            *("-i", str(second), "-filter_complex", join, "-map", "0:a", "-c:a", "copy", str(cut)),
        ],
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return cut, [first, second]


def test_a_hard_cut_to_another_face_is_refused(tmp_path):
    """Half a clip of one sample identity (astronaut), then one of another (hopper), at the same
    place: written 'ok' with 'face in all frames', the crops, landmarks and pose changing
    person at the cut. Now one line naming the time, its own code; each half alone is a
    clip."""
    from eamm.preprocess.errors import SceneCutError

    cut, halves = sample_cut_clip(tmp_path)
    with pytest.raises(SceneCutError) as refused:
        preprocess_clip(cut, tmp_path / "out")
    assert refused.value.code == "scene_cut"
    assert str(refused.value).startswith(f"{cut}: the picture changes all at once at 0.60 s (")
    assert not (tmp_path / "out").exists()
    for path in halves:
        assert preprocess_clip(path, tmp_path / path.stem).num_frames == 29


def test_frames_repeated_to_reach_25_fps_are_not_cuts():
    """A 12.5-fps clip has every frame twice: each change had none around it, and every step of
    8 grey levels read as a cut (9036x). Repeats are passed over; a real spike still counts."""
    from eamm.preprocess.clip import FrameChanges
    from eamm.preprocess.clip import find_cut as find_cut_in_changes

    def find_cut(thumbs, faces):
        changes = FrameChanges()
        for thumb in thumbs:
            changes.add(thumb)
        return find_cut_in_changes(changes.values, faces)

    steps = [np.full((64, 64), 9.0 * k, np.float32) for k in range(10)]
    doubled = [frame for frame in steps for _ in range(2)]
    faces = np.ones(len(doubled), bool)
    assert find_cut(doubled, faces) is None and find_cut(steps, faces[:10]) is None
    jump = [*doubled[:9], doubled[9] + 120, *(f + 120 for f in doubled[10:])]
    frame, spike = find_cut(jump, faces)
    assert frame == 8 and spike == pytest.approx(120 / 9)  # 120 levels, 9 around it
    assert find_cut(jump, np.r_[faces[:9], False, faces[10:]]) is None  # the far side: no face


@pytest.mark.parametrize("umask", ["077", "002"])
def test_outputs_take_the_users_umask(sample_lrw_clip, tmp_path, umask):
    """Staged files and folders had fixed modes: under umask 077 a clip's frames.mp4, audio.wav
    and folder were world-readable beside 0600 .npy files; under 002 the group could write the
    .npy files only."""
    out = tmp_path / "clip"
    eamm = f"{VENV_BIN / 'eamm'} preprocess-clip {sample_lrw_clip} --out {out}"
    done = subprocess.run(["sh", "-c", f"umask {umask} && {eamm}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    mask = int(umask, 8)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        name: 0o666 & ~mask for name in OUTPUT_FILES
    }


def test_a_face_the_landmark_backend_does_not_find_is_no_face():
    """FAN's points are NaN where it finds no face: the frame kept a finite pose row beside
    NaN landmarks, counted as a face, and generation read it as one."""
    from eamm.preprocess.clip import face_reading

    class NoFace:  # FAN finding nothing in the mesh's box
        name = "fan"

        def points68(self, rgb, mesh):
            return np.full((68, 2), np.nan, np.float32)

    mesh = np.column_stack([np.linspace(60, 200, 468), np.linspace(60, 200, 468), np.zeros(468)])
    crop = np.zeros((256, 256, 3), np.uint8)
    assert face_reading(crop, mesh, NoFace()) is None
    assert face_reading(crop, mesh, MediapipeLandmarks()) is not None
