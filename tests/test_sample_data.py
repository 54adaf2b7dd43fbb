"""The bundled sample dataset: layout, media properties (ffprobe), real detectable faces, and
the DVC stage that produces it (run with `dvc repro`, twice)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from eamm.config import SampleDataParams, load_section
from eamm.media import probe
from eamm.sample.dataset import plan, write_clip
from eamm.sample.voice import synth_speech
from tests.conftest import ROOT, VENV_BIN

SMALL = {
    "seed": 3,
    "mead": {
        "speakers": ["W009"],
        "clips": [{"emotion": "happy", "level": 3, "utterance": "001"}],
        "duration_s": [1.0, 1.1],
    },
    "lrw": {"words": ["ABOUT"], "clips_per_split": {"train": 1}},
}


def small_params(tmp_path: Path) -> Path:
    """The project's params with a smaller sample_data section."""
    path = tmp_path / "params.yaml"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample_data"] = SMALL
    path.write_text(yaml.safe_dump(params))
    return path


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


def test_plan_follows_real_layouts():
    params = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clips = plan(params)
    mead = [c for c in clips if c.dataset == "mead"]
    lrw = [c for c in clips if c.dataset == "lrw"]
    assert len(mead) == 9 and len(lrw) == 8
    assert mead[0].video == "mead/W009/video/front/neutral/level_1/001.mp4"
    assert mead[0].audio == "mead/W009/audio/neutral/level_1/001.m4a"
    assert lrw[0].video == "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
    assert {c.video.split("/")[3] for c in lrw} == {"train", "val", "test"}
    assert all(40 <= c.num_frames <= 61 for c in mead)
    assert len({c.seed for c in clips}) == len(clips)


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


def test_written_clips_have_the_real_media_properties(tmp_path):
    params = load_section(small_params(tmp_path), "sample_data", SampleDataParams)
    mead, lrw = plan(params)
    write_clip(mead, tmp_path / "raw")
    write_clip(lrw, tmp_path / "raw")

    video = probe(tmp_path / "raw" / mead.video, count_frames=True)
    assert (video.video.width, video.video.height, video.video.fps) == (1920, 1080, 30)
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
    assert probe(raw / files[2]).video.height == 1080
    assert (work / "data" / "sample" / "summary.json").is_file()
    assert (work / "dvc.lock").is_file()
    assert "Data and pipelines are up to date." in run("repro", "sample_data")
