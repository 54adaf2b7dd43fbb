"""The bundled sample dataset: layout, media properties (ffprobe), the signals EAMM's stages learn
(expression per emotion and level, mouth driven by the speech, head motion in the pose rows),
held-out identities, determinism, and the DVC stage that produces it (run with `dvc repro`, twice).

The signal tests render frames directly through the sample's functions and measure them with
the project's own face mesh (mediapipe) and pose code, as the preprocessing would."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from eamm.config import MEAD_EMOTIONS, SampleDataParams, load_section
from eamm.face.landmarks import FaceModels
from eamm.face.pose import pose_row
from eamm.media import probe
from eamm.sample.dataset import clip_signals, plan, render_frames, write_clip, write_portrait
from eamm.sample.expressions import expression
from eamm.sample.face import IDENTITIES, Framing, HeadPose, render_face
from eamm.sample.photos import LANDMARKS, measure_landmarks
from eamm.sample.voice import VOWELS, synth_speech
from tests.conftest import ROOT, VENV_BIN

SMALL = {
    "seed": 3,
    "mead": {
        "speakers": {"W009": "astronaut_wide"},
        "clips": [{"emotion": "happy", "level": 3, "utterance": "001"}],
        "duration_s": [1.0, 1.1],
    },
    "lrw": {
        "words": ["ABOUT"],
        "clips_per_split": {"train": 1},
        "identities": {"train": ["astronaut"]},
    },
}
FACE_256 = Framing(256, 256, (128.0, 128.0), 62.0)  # LRW-like framing, eye distance as the crop


def small_params(tmp_path: Path) -> Path:
    """The project's params with a smaller sample_data section."""
    path = tmp_path / "params.yaml"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample_data"] = SMALL
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def project_params() -> SampleDataParams:
    return load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)


def first_frame(path: Path, index: int = 10) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            if k == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path} has fewer than {index + 1} frames")


def count_faces(image: np.ndarray) -> int:
    import mediapipe as mp

    with mp.solutions.face_detection.FaceDetection(model_selection=1) as detector:
        result = detector.process(image)
    return len(result.detections or [])


@pytest.fixture(scope="module")
def models():
    face = FaceModels()
    yield face
    face.close()


def mesh_of(models: FaceModels, image: np.ndarray) -> np.ndarray:
    mesh = models.mesh(np.ascontiguousarray(image))
    assert mesh is not None, "no face mesh on a rendered frame"
    return mesh


FEATURES = ("brows", "inner_brows", "eyes", "corners", "mouth_width", "mouth_open", "asymmetry")


def face_features(mesh: np.ndarray) -> np.ndarray:
    """Expression features in eye distances, in the face's own frame (y down): brow height
    and inner-brow height above the eye line (negative = higher), eye opening, mouth-corner
    height against the lip centre (negative = up), mouth width, inner-lip gap and the
    height difference of the two mouth corners."""
    m = mesh[:, :2].astype(np.float64)
    right, left = (m[33] + m[133]) / 2, (m[263] + m[362]) / 2
    iod = np.linalg.norm(left - right)
    ex = (left - right) / iod
    ey = np.array([-ex[1], ex[0]])

    def q(i: int) -> np.ndarray:
        d = m[i] - (left + right) / 2
        return np.array([d @ ex, d @ ey]) / iod

    lip = (q(13) + q(14)) / 2
    return np.array(
        [
            np.mean([q(i)[1] for i in (70, 105, 107, 300, 334, 336)]),
            np.mean([q(i)[1] for i in (107, 336)]),
            np.mean([q(145)[1] - q(159)[1], q(374)[1] - q(386)[1]]),
            (q(61)[1] + q(291)[1]) / 2 - lip[1],
            q(291)[0] - q(61)[0],
            q(14)[1] - q(13)[1],
            q(61)[1] - q(291)[1],
        ]
    )


def test_plan_follows_real_layouts():
    clips = plan(project_params())
    mead = [c for c in clips if c.dataset == "mead"]
    lrw = [c for c in clips if c.dataset == "lrw"]
    assert len(mead) == 6 * 22 and len(lrw) == 5 * 12
    assert mead[0].video == "mead/W011/video/front/angry/level_1/001.mp4"
    assert mead[0].audio == "mead/W011/audio/angry/level_1/001.m4a"
    per_speaker = {(c.emotion, c.level) for c in mead if c.speaker == "W009"}
    assert per_speaker == {(e, lv) for e in MEAD_EMOTIONS for lv in (1, 2, 3)} - {
        ("neutral", 2),
        ("neutral", 3),
    }
    assert lrw[0].video == "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
    assert {c.video.split("/")[3] for c in lrw} == {"train", "val", "test"}
    assert all(36 <= c.num_frames <= 48 for c in mead)  # >= 30 frames at 25 fps
    assert all(c.width * 9 == c.height * 16 for c in mead)
    assert len({c.seed for c in clips}) == len(clips)


def test_held_out_identities_appear_in_no_training_clip():
    params = project_params()
    clips = plan(params)
    test_speakers = set(yaml.safe_load((ROOT / "splits/mead_v1.yaml").read_text())["test_speakers"])
    mead_test = {c.identity for c in clips if c.dataset == "mead" and c.speaker in test_speakers}
    mead_train = {
        c.identity for c in clips if c.dataset == "mead" and c.speaker not in test_speakers
    }
    lrw_train = {c.identity for c in clips if c.dataset == "lrw" and "/train/" in c.video}
    lrw_held = {c.identity for c in clips if c.dataset == "lrw" and "/train/" not in c.video}
    assert mead_test and lrw_held and len(mead_train) >= 3
    trained = mead_train | lrw_train
    assert not (mead_test | lrw_held) & trained
    assert params.portrait in mead_test and params.portrait not in trained


def test_identities_are_distinct_faces(models):
    faces = {name: render_face(ident, FACE_256) for name, ident in IDENTITIES.items()}
    small = {n: f[64:192:2, 64:192:2].astype(np.float32) for n, f in faces.items()}
    names = list(faces)
    for i, a in enumerate(names):
        mesh_of(models, faces[a])
        for b in names[i + 1 :]:
            assert np.abs(small[a] - small[b]).mean() > 8.0, (a, b)


@pytest.mark.parametrize("name", sorted(LANDMARKS))
def test_stored_photo_landmarks_match_the_face_mesh(name):
    measured = measure_landmarks(name)
    stored = LANDMARKS[name]
    err = max(np.hypot(*np.subtract(measured[i], stored[i])) for i in stored)
    assert err < 1.5


def test_speech_is_deterministic_voiced_and_drives_the_mouth():
    a = synth_speech(1.5, 16000, seed=7)
    b = synth_speech(1.5, 16000, seed=7)
    assert np.array_equal(a.samples, b.samples)
    assert len(a.samples) == 24000 and np.abs(a.samples).max() <= 0.7 + 1e-6
    mouth = a.mouth_at_frames(num_frames=37, fps=25)
    assert mouth.shape == (37,)
    assert mouth.max() > 0.3 and mouth[:2].max() == 0.0  # silence first, then syllables
    loud = np.abs(a.samples[a.mouth > 0.5]).mean()
    quiet = np.abs(a.samples[a.mouth == 0]).mean()
    assert loud > 5 * quiet
    assert len(a.vowels) >= 3
    for vowel, start, end in a.vowels:  # the lips take each vowel's shape while it sounds
        middle = (start + end) // 2
        assert a.width[middle] == pytest.approx(VOWELS[vowel].width)
        assert a.mouth[middle] == pytest.approx(VOWELS[vowel].opening, rel=0.05)
    assert np.all(a.width[a.mouth == 0] == 0)
    forced = synth_speech(1.5, 16000, seed=7, vowels="ou")
    assert [v for v, _, _ in forced.vowels][:2] == ["o", "u"]


def expression_features(models: FaceModels, identity: str) -> dict[tuple[str, int], np.ndarray]:
    ident = IDENTITIES[identity]
    features = {}
    for emotion in MEAD_EMOTIONS:
        for level in (1,) if emotion == "neutral" else (1, 2, 3):
            e = expression(emotion, level)
            frame = render_face(ident, FACE_256, HeadPose(), e.moves, e.opening, e.width)
            features[emotion, level] = face_features(mesh_of(models, frame))
    return features


@pytest.mark.parametrize("identity", ["astronaut", "hopper_narrow"])
def test_each_emotion_shows_its_own_expression_growing_with_level(models, identity):
    f = expression_features(models, identity)
    neutral = f["neutral", 1]
    change = {k: v - neutral for k, v in f.items()}
    emotions = [e for e in MEAD_EMOTIONS if e != "neutral"]
    growth = []
    for e in emotions:  # visible from level 1, stronger at level 3
        assert np.linalg.norm(change[e, 1]) > 0.035, e
        growth.append(np.linalg.norm(change[e, 3]) - np.linalg.norm(change[e, 1]))
    # the mesh saturates on some strong moves (contempt's corner, +0.007 on the astronaut): none
    # may shrink beyond the mesh's noise, and on average level 3 moves them clearly more
    assert min(growth) > -0.015 and np.mean(growth) > 0.03, growth
    for i, a in enumerate(emotions):  # every pair of emotions differs
        for b in emotions[i + 1 :]:
            assert np.linalg.norm(f[a, 3] - f[b, 3]) > 0.1, (a, b)
    d = {e: dict(zip(FEATURES, change[e, 3], strict=True)) for e in emotions}
    assert d["surprised"]["brows"] < -0.05 and d["surprised"]["mouth_open"] > 0.04
    assert d["fear"]["inner_brows"] < -0.04 and d["fear"]["mouth_width"] > 0.08
    assert d["sad"]["inner_brows"] < -0.03 and d["sad"]["corners"] > 0.03
    assert d["angry"]["inner_brows"] > 0.03 and d["angry"]["mouth_width"] < -0.04
    assert d["disgusted"]["brows"] > 0.01 and d["disgusted"]["mouth_open"] > 0.02
    assert d["happy"]["corners"] < -0.04 and d["happy"]["mouth_width"] > 0.1
    assert abs(d["contempt"]["asymmetry"]) > 0.025


@pytest.fixture(scope="module")
def measured_clip(models):
    """An LRW test clip (held-out identity) rendered and measured frame by frame."""
    clip = next(c for c in plan(project_params()) if c.dataset == "lrw" and "/test/" in c.video)
    signals = clip_signals(clip)
    meshes = [mesh_of(models, frame) for frame in render_frames(clip, signals)]
    return clip, signals, meshes


def test_mouth_opening_and_shape_follow_the_speech(models, measured_clip):
    _, signals, meshes = measured_clip
    gap = np.array([face_features(m)[FEATURES.index("mouth_open")] for m in meshes])
    assert signals.opening.max() > 0.5 and signals.opening.min() < 0.05
    r = np.corrcoef(gap, signals.opening)[0, 1]
    assert r > 0.8, r

    ident = IDENTITIES["astronaut_mirror"]
    width = {}
    for lips in (-1.0, 1.0):  # 'u'-like rounded vs 'i'-like spread, same opening
        frame = render_face(ident, FACE_256, opening=0.5, width=lips)
        width[lips] = face_features(mesh_of(models, frame))[FEATURES.index("mouth_width")]
    assert width[1.0] - width[-1.0] > 0.1, width


def test_head_pose_rows_follow_the_planned_motion(measured_clip):
    _, signals, meshes = measured_clip
    rows = np.stack([pose_row(m) for m in meshes])  # frames are 256 px, like the crops
    roll = np.array([p.roll_deg for p in signals.poses])
    shift = np.array([p.shift for p in signals.poses])
    scale = np.array([p.scale for p in signals.poses])
    assert np.ptp(roll) > 3.0
    assert np.corrcoef(rows[:, 2], roll)[0, 1] > 0.9
    assert np.polyfit(roll, rows[:, 2], 1)[0] == pytest.approx(1.0, abs=0.2)  # degrees, same sign
    assert np.corrcoef(rows[:, 4], shift[:, 0])[0, 1] > 0.9
    assert np.corrcoef(rows[:, 5], shift[:, 1])[0, 1] > 0.8
    assert np.corrcoef(rows[:, 3], scale)[0, 1] > 0.8


def test_rendering_is_deterministic(tmp_path):
    clip = next(c for c in plan(project_params()) if c.dataset == "lrw")
    first = list(render_frames(clip))
    assert all(np.array_equal(a, b) for a, b in zip(first, render_frames(clip), strict=True))
    digests = []
    for run in ("a", "b"):
        write_clip(clip, tmp_path / run)
        digests.append(hashlib.md5((tmp_path / run / clip.video).read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_portrait_is_a_held_out_neutral_face(tmp_path, models):
    path = write_portrait(tmp_path / "portrait.png", "astronaut_wide")
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (512, 512, 3)
    assert count_faces(image) == 1
    mesh_of(models, image)
    again = np.asarray(Image.open(write_portrait(tmp_path / "again.png", "astronaut_wide")))
    assert np.array_equal(image, again)


def test_written_clips_have_the_real_media_properties(tmp_path):
    params = load_section(small_params(tmp_path), "sample_data", SampleDataParams)
    mead, lrw = plan(params)
    write_clip(mead, tmp_path / "raw")
    write_clip(lrw, tmp_path / "raw")

    video = probe(tmp_path / "raw" / mead.video, count_frames=True)
    assert (video.video.width, video.video.height, video.video.fps) == (768, 432, 30)
    assert video.video.codec_name == "h264" and video.video.num_frames == mead.num_frames
    assert (video.audio.codec_name, video.audio.sample_rate, video.audio.channels) == (
        "aac",
        48000,
        2,
    )
    audio = probe(tmp_path / "raw" / mead.audio)
    assert audio.video is None
    assert (audio.audio.codec_name, audio.audio.sample_rate, audio.audio.channels) == (
        "aac",
        48000,
        2,
    )
    assert abs(audio.duration_s - mead.duration_s) < 0.05

    clip = probe(tmp_path / "raw" / lrw.video, count_frames=True)
    assert (clip.video.width, clip.video.height, clip.video.fps) == (256, 256, 25)
    assert clip.video.num_frames == 29
    assert (clip.audio.sample_rate, clip.audio.channels) == (16000, 1)

    assert count_faces(first_frame(tmp_path / "raw" / mead.video)) == 1
    assert count_faces(first_frame(tmp_path / "raw" / lrw.video)) == 1


@pytest.mark.slow
def test_dvc_stage_writes_the_dataset_and_second_repro_does_nothing(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    for name in ("eamm", "flows", "tasks"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work)
    small_params(work)
    env = dict(os.environ, EAMM_PROJECT_ROOT=str(work), PREFECT_HOME=str(tmp_path / "prefect"))
    dvc = [str(VENV_BIN / "dvc")]

    def run(*args: str) -> str:
        proc = subprocess.run(
            [*dvc, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    run("init", "--no-scm", "-q")
    run("config", "core.analytics", "false")
    run("repro", "sample_data")
    raw = work / "data" / "sample" / "raw"
    files = sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())
    assert files == [
        "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4",
        "mead/W009/audio/happy/level_3/001.m4a",
        "mead/W009/video/front/happy/level_3/001.mp4",
    ]
    assert probe(raw / files[2]).video.height == 432
    assert (work / "data" / "sample" / "summary.json").is_file()
    assert (work / "data" / "sample" / "portrait.png").is_file()
    assert (work / "dvc.lock").is_file()
    assert "Data and pipelines are up to date." in run("repro", "sample_data")


def _sample_data(tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    """``eamm sample-data`` as a user runs it, with the small params."""
    params = small_params(tmp_path)
    args = ["sample-data", "--params", params, "--out", out, "--summary", tmp_path / "summary.json"]
    return subprocess.run(
        [str(VENV_BIN / "eamm"), *map(str, args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
    )


def test_sample_data_never_replaces_a_folder_holding_other_files(tmp_path):
    """``--out`` is replaced whole: a user's folder named by mistake was deleted (exit 0)."""
    out = tmp_path / "videos"
    (out / "mead").mkdir(parents=True)
    (out / "holiday.mp4").write_bytes(b"mine")
    result = _sample_data(tmp_path, out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "holiday.mp4" in line and "--out" in line and str(out) in line
    assert (out / "holiday.mp4").read_bytes() == b"mine"
    assert "Starting temporary server" not in result.stderr


def test_sample_data_second_run_on_a_held_folder_stops_at_once(tmp_path):
    from eamm.folder_lock import output_lock

    out = tmp_path / "raw"
    with output_lock(out, "sample-data run"):
        result = _sample_data(tmp_path, out)
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "another sample-data run is writing it" in line and f"pid {os.getpid()}" in line
    assert not out.exists()


@pytest.mark.slow
def test_sample_data_replaces_an_earlier_dataset_and_a_killed_runs_staging(tmp_path):
    """A re-run swaps the new dataset in whole (the old one removed only after), and the
    staging folder a killed run left beside it goes; several runs never share one."""
    out = tmp_path / "raw"
    (out / "mead").mkdir(parents=True)
    (out / "mead" / "stale.mp4").write_bytes(b"old run")
    killed = tmp_path / ".raw.x1y2.partial"
    (killed / "lrw").mkdir(parents=True)
    result = _sample_data(tmp_path, out)
    assert result.returncode == 0, result.stderr[-2000:]
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(written) == 3 and all(p.endswith((".mp4", ".m4a")) for p in written), written
    assert not (out / "mead" / "stale.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "raw", "summary.json"]


def test_an_unpainted_cavity_changes_only_the_open_mouth():
    """The rig probe's warp-only render (``paint_cavity=False``) differs from the clip only
    where the jaw's gap is painted dark."""
    clip = next(c for c in plan(project_params()) if c.emotion == "surprised" and c.level == 3)
    signals = clip_signals(clip)
    k = int(np.argmax(signals.opening))
    painted = next(itertools.islice(render_frames(clip, signals), k, None)).astype(int)
    plain = next(itertools.islice(render_frames(clip, signals, False), k, None)).astype(int)
    changed = np.abs(painted - plain).max(axis=-1) > 8
    assert 0 < changed.mean() < 0.01  # the mouth only: under 1 % of a 768x432 frame
    assert painted[changed].mean() < plain[changed].mean() - 40  # painted dark
