"""Generation faults of issue #15 on the project's own sample inputs and tiny random networks:
bounded memory (frames stream through a window at a time), checked ``--pose`` input, and no
silent fallback to the neutral video."""

from __future__ import annotations

import errno
import os
import subprocess

import av
import numpy as np
import pytest
import torch
import yaml

from benchmarks.generate_memory import write_random_checkpoints
from eamm.audio import end_pad_for_frames, mfcc_window_range, mfcc_windows, write_wav_s16
from eamm.augment import emotion_augment
from eamm.clips import interpolate_missing_rows
from eamm.config import GenerateParams, SampleDataParams, load_section
from eamm.errors import EammError
from eamm.generate import EmotionSource, animate_stream, generate, load_models
from eamm.sample.dataset import plan, write_clip, write_portrait
from eamm.sample.voice import synth_speech
from tests.conftest import ROOT, VENV_BIN, kill_group_when, mounted_tmpfs

MODEL = yaml.safe_load((ROOT / "params.yaml").read_text())["model"] | {"profile": "tiny"}
PARAMS = GenerateParams(device="cpu")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("inputs")
    sample = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clip = next(c for c in plan(sample) if c.dataset == "lrw")
    write_clip(clip, root / "raw")
    torch.manual_seed(0)
    speech = synth_speech(1.2, 16000, seed=0).samples
    return {
        "photo": write_portrait(root / "portrait.png"),
        "audio": write_wav_s16(speech, root / "speech.wav"),
        "emotion_video": root / "raw" / clip.video,
        "models": write_random_checkpoints(root / "models", MODEL),
        "no_emotion": write_random_checkpoints(root / "models_a2fd", MODEL, emotion=False),
    }


def frames_of(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def pose_rows(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float32)[:, None]
    base = np.array([0.05, -0.02, 0.01, 0.0007, 0.03, -0.02, 0.0], np.float32)
    amplitude = np.array([0.01, 0.01, 0.01, 0.0001, 0.01, 0.01, 0.01], np.float32)
    return base + amplitude * np.sin(t / 3 + np.arange(7))  # the scale column stays positive


def full_disk_closing(monkeypatch, prefix: str) -> None:
    """The disk fills as a video whose file name starts with ``prefix`` closes (its staged
    file): that writer aborts, ENOSPC; every other video is written."""
    from eamm.media import VideoWriter

    close = VideoWriter.close

    def full_disk(self):
        if self.path.name.startswith(prefix):
            self.abort()
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return close(self)

    monkeypatch.setattr(VideoWriter, "close", full_disk)


def test_the_shared_loader_applies_the_speed_fields(inputs):
    """``load_models`` is what generation and evaluation both call: the renderer comes out as
    ``GenerateParams`` asks (bf16 autocast here), not only in ``eamm generate``."""
    from eamm.generate import load_models

    plain = load_models(inputs["models"], torch.device("cpu"))
    tuned = load_models(inputs["models"], torch.device("cpu"), GenerateParams(precision="bf16"))
    assert (plain.render_dtype, tuned.render_dtype) == (None, torch.bfloat16)


# --- 5: bounded memory ----------------------------------------------------------------------


def test_frames_come_out_before_the_next_window_is_read(inputs):
    """Streaming: each window's frames leave before the next window's inputs are made, so only
    one window is in memory (all-at-once generation read every frame's input first)."""
    from eamm.generate import load_models

    models = load_models(inputs["models"], torch.device("cpu"))
    size = models.image_size
    read, seen = [], []

    def windows():
        for k in range(3):
            read.append(k)
            yield torch.randn(8, 28, 12), torch.randn(8, 6), torch.rand(8, 3, size, size)

    params = GenerateParams(device="cpu", batch_size=4)
    for batch in animate_stream(models, torch.rand(1, 3, size, size), windows(), params):
        seen.append((len(read), len(batch["neutral"])))
    assert seen == [(1, 4), (1, 4), (2, 4), (2, 4), (3, 4), (3, 4)]


def test_mfcc_windows_of_a_range_are_those_of_the_whole_speech():
    speech = synth_speech(3.0, 16000, seed=1).samples
    t = len(speech) // 640
    pad = end_pad_for_frames(len(speech), t)
    whole = mfcc_windows(speech, pad)[:t]
    parts = [mfcc_window_range(speech, pad, a, min(t, a + 16)) for a in range(0, t, 16)]
    assert np.array_equal(np.concatenate(parts), whole)


def test_emotion_augmentation_is_the_same_in_windows():
    """Window by window, the emotion video is augmented exactly as ``emotion_augment`` does the
    whole looped video (same seed, same frames), so windows change nothing there."""
    frames = np.random.default_rng(1).integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    for t in (30, 150):
        whole = emotion_augment(np.resize(frames, (t, 64, 64, 3)), np.random.default_rng(3))
        source = EmotionSource(frames, 3, t)
        parts = [source.augmented(a, min(t, a + 64)) for a in range(0, t, 64)]
        assert np.array_equal(np.concatenate(parts), whole)


def test_generation_in_windows_matches_one_window(inputs, tmp_path, monkeypatch):
    """The same videos whether the speech is one window or several (LSTM state, smoothing and
    first-frame keypoints carried over), up to float rounding."""
    args = (inputs["photo"], inputs["audio"], inputs["emotion_video"])
    one = generate(*args, tmp_path / "one.mp4", inputs["models"], params=PARAMS)
    monkeypatch.setattr("eamm.generate.WINDOW_FRAMES", 8)
    many = generate(*args, tmp_path / "many.mp4", inputs["models"], params=PARAMS)
    assert one.num_frames == many.num_frames == 30
    for name in ("emotion", "neutral", "compare"):
        a, b = frames_of(getattr(one, name)), frames_of(getattr(many, name))
        assert a.shape == b.shape and a.shape[0] == 30
        assert np.abs(a.astype(int) - b).mean() < 0.05, name


def test_a_long_emotion_or_pose_video_is_read_only_as_far_as_the_speech(inputs, tmp_path):
    """A minute of emotion video held 1.2 GB (1.7 as pose video too) for two seconds of
    speech: only the speech's frames are read; the videos come out the same."""
    from eamm.config import PreprocessParams
    from eamm.face.landmarks import FaceModels, make_backend
    from eamm.generate import aligned_frames

    long = tmp_path / "long.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text(f"file '{inputs['emotion_video']}'\n" * 4)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", long],
        check=True,
    )
    params = PreprocessParams()
    face = FaceModels.from_params(params.landmarks)
    backend = make_backend(params.landmarks.backend, params.landmarks.fan_weights_dir)
    try:
        assert len(list(aligned_frames(long, 64, params, face, backend, max_frames=30))) == 30
        assert len(list(aligned_frames(long, 64, params, face, backend))) == 4 * 29
    finally:
        face.close()
    common = (inputs["photo"], inputs["audio"])  # 1.2 s: 30 frames, the clip has 29
    videos = [
        generate(*common, video, tmp_path / f"{name}_talk.mp4", inputs["models"], pose_video=video)
        for name, video in (("short", inputs["emotion_video"]), ("long", long))
    ]
    for name in ("emotion", "neutral"):
        a, b = (frames_of(getattr(v, name)) for v in videos)
        # the 30th pose row: the short clip's ping-pong (its 29th) against the long one's 30th
        assert len(a) == len(b) == 30 and np.array_equal(a[:29], b[:29]), name


def test_a_photo_with_two_faces_says_which_it_animates(inputs, tmp_path):
    import cv2

    from eamm.config import PreprocessParams

    face = cv2.imread(str(inputs["photo"]))
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), np.concatenate([face, cv2.flip(face, 1)], axis=1))
    result = generate(photo, inputs["audio"], None, tmp_path / "o.mp4", inputs["models"])
    assert f"{photo}: 2 faces; animating the largest" in " ".join(result.notes)
    refuse = PreprocessParams(on_multiple_faces="fail")
    with pytest.raises(EammError, match=r"two\.png: 2 faces in the image$"):
        generate(
            photo, inputs["audio"], None, tmp_path / "p.mp4", inputs["models"], preprocess=refuse
        )


def test_the_generate_flow_logs_its_notes(inputs, tmp_path, prefect_api):
    """A deployment's run has no console: the notes (here the neutral-only fallback) go to
    the flow run's log (its logger's records, whichever handlers ship them)."""
    import logging

    from flows.generate import generate_flow

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    run_logger = logging.getLogger("prefect.flow_runs")
    run_logger.addHandler(handler)
    out = tmp_path / "o.mp4"
    try:
        result = generate_flow(
            str(inputs["photo"]),
            str(inputs["audio"]),
            str(out),
            None,
            str(inputs["models"]),
            params_path=None,
        )
    finally:
        run_logger.removeHandler(handler)
    note = f"{out}: the neutral video (no emotion video given)"
    assert result.notes == [note] and out.is_file()
    assert [(r.levelname, r.getMessage()) for r in records if note in r.getMessage()] == [
        ("WARNING", note)
    ]


# --- 6: --pose input ------------------------------------------------------------------------


def test_nan_pose_rows_are_filled_and_counted(inputs, tmp_path):
    rows = pose_rows(12)
    rows[[0, 5, 6, 11]] = np.nan  # frames without a face, as preprocessing writes them
    np.save(tmp_path / "pose.npy", rows)
    filled = interpolate_missing_rows(rows)
    assert np.array_equal(filled[0], rows[1]) and np.array_equal(filled[11], rows[10])  # held
    assert np.allclose(filled[5], (2 * rows[4] + rows[7]) / 3)  # a third of the way
    np.save(tmp_path / "filled.npy", filled)
    common = (inputs["photo"], inputs["audio"], None)
    result = generate(
        *common, tmp_path / "a.mp4", inputs["models"], pose=tmp_path / "pose.npy", params=PARAMS
    )
    assert any("4 of 12 pose rows are NaN" in note for note in result.notes)
    assert f"pose.npy: 12 pose rows for {result.num_frames} frames, played forwards" in " ".join(
        result.notes
    )
    frames = frames_of(result.neutral)
    assert frames.mean(axis=(1, 2, 3)).min() > 5  # NaN poses rendered black frames
    again = generate(
        *common, tmp_path / "b.mp4", inputs["models"], pose=tmp_path / "filled.npy", params=PARAMS
    )
    assert np.array_equal(frames_of(again.neutral), frames)


@pytest.mark.parametrize("name", ["talk", "talk.avi", "folder/"])
def test_an_output_that_is_not_mp4_is_refused_before_generating(inputs, tmp_path, name):
    with pytest.raises(EammError, match="the videos are MP4") as err:
        generate(inputs["photo"], inputs["audio"], None, f"{tmp_path}/{name}", tmp_path / "none")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.full((5, 7), np.nan, np.float32), "all 5 pose rows are NaN"),
        (np.full((5, 7), np.inf, np.float32), "all 5 pose rows are NaN or infinite"),
        (np.full((5, 7), 1e30, np.float32), "pose rows out of range"),
        (np.zeros((5, 7), np.float32), "pose rows out of range"),  # scale 0
        (np.tile([0, 0, 0, 5e-4, 1e30, 70, 0], (5, 1)), "pose rows out of range"),  # tx
        (np.tile([0, 0, 0, 1e-30, 60, 70, 0], (5, 1)), "pose rows out of range"),  # scale
        (np.tile([0, 0, 0, 5e-4, 1e300, 70, 0], (5, 1)), "pose rows out of range"),  # float64
        (np.zeros((5, 5), np.float32), r"shape \(n, 6\) or \(n, 7\), got \(5, 5\)"),
        (np.zeros((1, 5, 7), np.float32), r"got \(1, 5, 7\)"),
        (np.zeros(7, np.float32), r"got \(7,\)"),
        (np.zeros((0, 7), np.float32), r"got \(0, 7\)"),
        (np.zeros((5, 7), np.int64), "must be floating point, got int64"),
        (np.array([[None] * 7], dtype=object), "cannot read pose rows"),
        (None, "this is not a .npy file"),  # not np.load's advice to unpickle it
    ],
)
def test_bad_pose_files_are_refused_in_one_line(inputs, tmp_path, array, reason):
    path = tmp_path / "pose.npy"
    if array is None:
        path.write_bytes(b"not a numpy file")
    else:
        np.save(path, array, allow_pickle=True)
    with pytest.raises(EammError, match=reason) as err:  # before any network is loaded
        generate(
            inputs["photo"], inputs["audio"], None, tmp_path / "o.mp4", tmp_path / "none", pose=path
        )
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    assert not list(tmp_path.glob("*.mp4"))


# --- 9: no silent fallback to the neutral video ---------------------------------------------


@pytest.mark.parametrize("missing", ["video", "checkpoint"])
def test_without_an_emotion_source_out_is_the_neutral_video(inputs, tmp_path, missing):
    out = tmp_path / "talk.mp4"
    video = None if missing == "video" else inputs["emotion_video"]
    models = inputs["models"] if missing == "video" else inputs["no_emotion"]
    result = generate(inputs["photo"], inputs["audio"], video, out, models, params=PARAMS)
    assert (result.neutral, result.emotion, result.compare) == (out, None, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]
    assert frames_of(out).shape == (30, 64, 64, 3)
    reason = {
        "video": "no emotion video given",
        "checkpoint": f"no emotion checkpoint in {models / 'emotion'}",
    }[missing]
    assert result.notes == [f"{out}: the neutral video ({reason})"]


def test_the_three_videos_are_replaced_together_or_not_at_all(inputs, tmp_path, monkeypatch):
    """A disk filling up as the last encoder closes (injected ENOSPC: it closes after the other
    two) leaves the previous run's three videos, not two new ones beside an old one."""
    import hashlib

    args = (inputs["photo"], inputs["audio"], inputs["emotion_video"], tmp_path / "talk.mp4")
    first = generate(*args, inputs["models"], params=PARAMS)
    outputs = [first.emotion, first.neutral, first.compare]
    before = [hashlib.md5(p.read_bytes()).hexdigest() for p in outputs]
    full_disk_closing(monkeypatch, ".talk.mp4.")  # the emotion video's staged file
    with pytest.raises(OSError, match="No space left"):
        generate(*args, inputs["models"], params=PARAMS.model_copy(update={"crf": 30}))
    assert [hashlib.md5(p.read_bytes()).hexdigest() for p in outputs] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in outputs)


def test_cli_says_in_one_line_that_out_is_neutral(inputs, tmp_path):
    from flows.cli import NO_PARAMS_NOTE

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = tmp_path / "talk.mp4"
    args = ["--photo", str(inputs["photo"]), "--audio", str(inputs["audio"]), "--out", str(out)]
    run = subprocess.run(
        [str(VENV_BIN / "eamm"), "generate", *args, "--checkpoints", str(inputs["models"])],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if line.startswith("note:")]
    assert notes == [  # outside a project: its settings are the packaged ones, and it says so
        f"note: {NO_PARAMS_NOTE}",
        f"note: {out}: the neutral video (no emotion video given)",
    ]
    assert out.is_file() and not (tmp_path / "talk_neutral.mp4").exists()


def test_a_photo_without_a_face_is_refused_in_one_line(inputs, tmp_path):
    from PIL import Image

    photo = tmp_path / "wall.png"
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(photo)
    with pytest.raises(EammError) as err:
        generate(photo, inputs["audio"], None, tmp_path / "o.mp4", inputs["models"], params=PARAMS)
    assert str(err.value) == f"{photo}: no face in the image"
    assert not list(tmp_path.glob("*.mp4"))


def test_a_photo_named_in_bytes_that_are_not_utf8_is_read(inputs, tmp_path):
    """cv2.imread crashed the process (SIGSEGV) on such a name; the bytes are read here."""
    import shutil

    photo = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"portr\xe9t.png"))
    shutil.copyfile(inputs["photo"], photo)
    out = tmp_path / "o.mp4"
    generate(photo, inputs["audio"], None, out, inputs["models"], params=PARAMS)
    assert frames_of(out).shape == (30, 64, 64, 3)


def test_a_phones_heic_photo_is_animated(inputs, tmp_path):
    """HEIC, an iPhone's default photo format: OpenCV cannot decode it, libheif does."""
    import pillow_heif
    from PIL import Image

    pillow_heif.register_heif_opener()
    photo = tmp_path / "IMG_0042.HEIC"
    Image.open(inputs["photo"]).convert("RGB").save(photo, format="HEIF", quality=95)
    out = tmp_path / "o.mp4"
    generate(photo, inputs["audio"], None, out, inputs["models"], params=PARAMS)
    assert frames_of(out).shape == (30, 64, 64, 3)


def test_an_empty_photo_is_refused_in_one_line(inputs, tmp_path):
    """... and leaves no output folder behind (the lock made it before the photo was read)."""
    photo = tmp_path / "empty.png"
    photo.write_bytes(b"")
    out = tmp_path / "new" / "deeper" / "o.mp4"
    with pytest.raises(EammError, match=r"empty\.png: unreadable image \(empty file\)$"):
        generate(photo, inputs["audio"], None, out, inputs["models"], params=PARAMS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png"]


def test_an_unwritable_out_folder_is_one_line(inputs, tmp_path, monkeypatch):
    """A read-only folder ended in 'unexpected error: PermissionError' naming the lock file.
    Injected: the tests may run as root, whom permissions do not stop."""
    import errno

    import eamm.folder_lock

    real_open = os.open

    def denied(path, flags, *mode):
        if str(path).endswith(".lock"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *mode)

    monkeypatch.setattr(eamm.folder_lock.os, "open", denied)
    out = tmp_path / "new" / "o.mp4"
    with pytest.raises(EammError, match=r"new: output folder not writable \(Permission denied\)$"):
        generate(inputs["photo"], inputs["audio"], None, out, inputs["models"], params=PARAMS)
    assert not list(tmp_path.iterdir())


def black_gap(video, out, start_s: float, end_s: float):
    """``video`` with frames from ``start_s`` to ``end_s`` painted black (no face in them)."""
    black = f"drawbox=enable='between(t,{start_s},{end_s})':x=0:y=0:w=iw:h=ih:color=black:t=fill"
    cmd = ["ffmpeg", "-v", "error", "-i", video, "-vf", black, "-c:a", "copy", out]
    subprocess.run(cmd, check=True)
    return out


@pytest.fixture(scope="module")
def face_models():
    from eamm.config import PreprocessParams
    from eamm.face.landmarks import FaceModels, make_backend

    params = PreprocessParams()
    face = FaceModels.from_params(params.landmarks)
    yield params, face, make_backend(params.landmarks.backend, params.landmarks.fan_weights_dir)
    face.close()


def test_faceless_frames_of_a_pose_video_keep_their_place(inputs, tmp_path, face_models):
    """They were dropped: the head motion played early, then backwards (ping-pong), without a
    note. Each frame keeps its place now, interpolated as ``--pose`` NaN rows are."""
    from eamm.generate import pose_video_rows, tracked_crops

    video = black_gap(inputs["emotion_video"], tmp_path / "gap.mp4", 0.3, 0.6)
    gap = np.flatnonzero(frames_of(video).mean(axis=(1, 2, 3)) < 1)
    clean, none = pose_video_rows(
        inputs["emotion_video"], tracked_crops(inputs["emotion_video"], 30, *face_models)
    )
    rows, missing = pose_video_rows(video, tracked_crops(video, 30, *face_models))
    assert none == 0 and missing == len(gap) > 5 and len(rows) == len(clean) == 29
    before, after = gap[0] - 1, gap[-1] + 1
    for k in gap:  # interpolated from the rows on either side
        w = (k - before) / (after - before)
        assert np.allclose(rows[k], (1 - w) * rows[before] + w * rows[after], atol=1e-4)
    kept = np.setdiff1d(np.arange(29), gap)  # in time: within 2 degrees (re-encoded frames)
    assert np.abs(rows[kept, :3] - clean[kept, :3]).max() < 2.0
    result = generate(
        inputs["photo"],
        inputs["audio"],
        None,
        tmp_path / "o.mp4",
        inputs["models"],
        pose_video=video,
        params=PARAMS,
    )
    note = (
        f"{video}: {missing} of 29 frames without a face (or with one leaving the picture or "
        "rolled past 90 degrees), their pose rows interp"
    )
    assert note in " ".join(result.notes)


def test_faceless_frames_of_an_emotion_video_are_left_out(inputs, tmp_path, face_models):
    """They were fed to the emotion network as black crops, without a note."""
    from eamm.generate import emotion_frames, tracked_crops

    video = black_gap(inputs["emotion_video"], tmp_path / "gap.mp4", 0.6, 2.0)
    black = int((frames_of(video).mean(axis=(1, 2, 3)) < 1).sum())
    frames, missing = emotion_frames(video, 64, tracked_crops(video, 30, *face_models))
    assert missing == black > 5 and len(frames) == 29 - black
    assert frames.mean(axis=(1, 2, 3)).min() > 40
    result = generate(
        inputs["photo"],
        inputs["audio"],
        video,
        tmp_path / "o.mp4",
        inputs["models"],
        params=PARAMS,
    )
    note = (
        f"{video}: {black} of 29 frames without a face (or with one leaving the picture or "
        "rolled past 90 degrees), left out of the emotion source"
    )
    assert note in result.notes


def living_in_group(pgid: int) -> list[int]:
    """Processes of group ``pgid`` not yet dead (zombies hold no files; an init that does not
    reap would keep them forever)."""
    from pathlib import Path

    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            living.append(int(stat.parent.name))
    return living


def test_one_generation_per_out_and_a_killed_ones_leftovers_go(inputs, tmp_path):
    """kill -9 in the middle of writing leaves the staged videos and the lock file (nothing
    can remove them); the next run on that --out takes the lock over and removes them. While
    a run holds --out, another stops at once naming it."""
    import sys
    import time

    from eamm.folder_lock import FolderLockedError, output_lock

    out = tmp_path / "talk.mp4"
    long_speech = write_wav_s16(synth_speech(20.0, 16000, seed=1).samples, tmp_path / "s.wav")
    script = (
        "import sys; from eamm.generate import generate; from eamm.config import GenerateParams;"
        "generate(*sys.argv[1:6], params=GenerateParams(device='cpu'))"
    )
    args = [inputs["photo"], long_speech, inputs["emotion_video"], out, inputs["models"]]
    # its own process group, killed whole (the encoders too, as `kill -9 -<pgid>` does; an
    # encoder left running would finish its file after this test's next run had looked)
    run = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], start_new_session=True)
    kill_group_when(run, lambda: bool(list(tmp_path.glob("..talk.mp4.*.partial.mp4"))), 120)
    deadline = time.monotonic() + 120
    # the rest of the group too: a child caught between fork and exec shares the lock's
    # flock until it is gone (CI once found the lock still held right after wait())
    while living_in_group(run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert ".talk.mp4.lock" in left and len(left) >= 4, left  # 3 staged videos + encoders'

    with output_lock(out, "generation"), pytest.raises(FolderLockedError) as held:
        generate(inputs["photo"], inputs["audio"], inputs["emotion_video"], out, inputs["models"])
    assert str(held.value).startswith(f"{out}: another generation is writing it (pid {os.getpid()}")
    # a run writing this run's _neutral video (its own --out): this one stops too (it removed
    # that run's staged video and replaced its output)
    sibling = tmp_path / "talk_neutral.mp4"
    with output_lock(sibling, "generation"), pytest.raises(FolderLockedError) as held:
        generate(inputs["photo"], inputs["audio"], inputs["emotion_video"], out, inputs["models"])
    assert str(held.value).startswith(f"{sibling}: another generation is writing it")

    result = generate(
        inputs["photo"],
        inputs["audio"],
        inputs["emotion_video"],
        out,
        inputs["models"],
        params=PARAMS,
    )
    assert frames_of(result.compare).shape[0] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s.wav",
        "talk.mp4",
        "talk_compare.mp4",
        "talk_neutral.mp4",
    ]


# --- checkpoints of one training run -------------------------------------------------------


def copy_models(inputs, folder):
    import shutil

    return shutil.copytree(inputs["models"], folder)


def test_a_missing_finetune_falls_back_to_stage_one_with_a_note(inputs, tmp_path):
    """The fallback was silent, and without either checkpoint the error named stage 1's."""
    from eamm.stages import checkpoint_path

    models = copy_models(inputs, tmp_path / "models")
    finetune = checkpoint_path(models, "finetune_a2fd")
    finetune.unlink()
    common = (inputs["photo"], inputs["audio"], None)
    result = generate(*common, tmp_path / "o.mp4", models, params=PARAMS)
    stage_one = checkpoint_path(models, "train_a2fd")
    assert f"{finetune} missing: the audio network of stage 1 ({stage_one})" in result.notes
    stage_one.unlink()
    with pytest.raises(EammError, match=rf"^{finetune}: checkpoint does not exist \(nor stage"):
        generate(*common, tmp_path / "p.mp4", models, params=PARAMS)


def test_a_checkpoint_of_another_stage_as_the_emotion_one_is_one_line(inputs, tmp_path):
    """An a2fd checkpoint in the emotion folder ended in KeyError: 'emotion_kp'."""
    import shutil

    from eamm.stages import checkpoint_path

    models = copy_models(inputs, tmp_path / "models")
    emotion = checkpoint_path(models, "train_emotion")
    shutil.copyfile(checkpoint_path(models, "train_a2fd"), emotion)
    with pytest.raises(EammError, match=rf"^{emotion}: not an emotion checkpoint"):
        generate(
            inputs["photo"],
            inputs["audio"],
            inputs["emotion_video"],
            tmp_path / "o.mp4",
            models,
            params=PARAMS,
        )


@pytest.mark.parametrize("extra", [-1, 1])
def test_emotion_scales_not_one_per_emotion_keypoint_is_one_line(inputs, extra):
    """A stage 3 trained with more emotion keypoints (``train_emotion.num_emotion_kp``) than
    ``generate.emotion_scale`` lists ended in a RuntimeError on tensor sizes mid-generation;
    with fewer, the extra scales were ignored without a word (a user scaling a fifth keypoint
    saw nothing change)."""
    from eamm.checkpoint import load_checkpoint
    from eamm.stages import checkpoint_path

    emotion = checkpoint_path(inputs["models"], "train_emotion")
    count = len(load_checkpoint(emotion, "cpu")["emotion_kp"])
    given = GenerateParams(device="cpu", emotion_scale=[1.0] * (count + extra))
    with pytest.raises(
        EammError,
        match=rf"^params: generate.emotion_scale has {count + extra} entries for the {count} "
        rf"emotion keypoints of {emotion} \(train_emotion.num_emotion_kp\)",
    ):
        load_models(inputs["models"], torch.device("cpu"), given)


def test_checkpoints_of_two_training_runs_are_refused(inputs, tmp_path):
    """Each checkpoint names the upstream files it was trained from (``upstream``); a folder
    whose FOMM is another run's rendered another face with exit 0."""
    from eamm.checkpoint import file_fingerprint, load_checkpoint, save_checkpoint
    from eamm.stages import checkpoint_path

    models = copy_models(inputs, tmp_path / "models")
    fomm = checkpoint_path(models, "train_fomm")
    finetune = checkpoint_path(models, "finetune_a2fd")
    payload = load_checkpoint(finetune)
    common = (inputs["photo"], inputs["audio"], None)
    save_checkpoint({**payload, "upstream": {"train_fomm": file_fingerprint(fomm)}}, finetune)
    generate(*common, tmp_path / "o.mp4", models, params=PARAMS)  # one run's: accepted
    save_checkpoint({**payload, "upstream": {"train_fomm": "0" * 32}}, finetune)
    with pytest.raises(EammError, match=rf"^{finetune}: trained from another train_fomm "):
        generate(*common, tmp_path / "p.mp4", models, params=PARAMS)


@pytest.mark.parametrize(
    ("option", "name"),
    [("--audio", "x.mp4"), ("--emotion-video", "x.mp4"), ("--photo", "x_neutral.mp4")],
)
def test_an_output_that_is_an_input_is_refused(inputs, tmp_path, option, name):
    """``--out x.mp4 --emotion-video x.mp4`` replaced the emotion video with the result (and
    ``x_neutral.mp4``, ``x_compare.mp4`` are written too)."""
    import shutil

    clash = tmp_path / name
    shutil.copyfile(inputs["photo" if option == "--photo" else "emotion_video"], clash)
    before = clash.read_bytes()
    given = {"--photo": inputs["photo"], "--audio": inputs["audio"], "--emotion-video": None}
    given[option] = clash
    with pytest.raises(EammError, match=rf"{name}: {option} is a video this run writes"):
        generate(*given.values(), tmp_path / "x.mp4", inputs["models"], params=PARAMS)
    assert clash.read_bytes() == before and sorted(tmp_path.iterdir()) == [clash]


def test_a_video_whose_face_comes_late_is_aligned_where_it_shows(inputs, tmp_path, face_models):
    """An emotion or pose video opening without a face (an intro, a cut) was refused: "no face
    in the first 8 frames". The frames before the face are left out / interpolated."""
    from eamm.generate import emotion_frames, pose_video_rows, tracked_crops

    def read(path):
        return tracked_crops(path, 30, *face_models)

    video = black_gap(inputs["emotion_video"], tmp_path / "late.mp4", 0.0, 0.5)
    black = int((frames_of(video).mean(axis=(1, 2, 3)) < 1).sum())
    assert black > 8  # more than the alignment's first window
    frames, missing = emotion_frames(video, 64, read(video))
    assert missing == black and len(frames) == 29 - black
    clean, _ = pose_video_rows(inputs["emotion_video"], read(inputs["emotion_video"]))
    rows, missing = pose_video_rows(video, read(video))
    assert missing == black and np.allclose(rows[:black], rows[black])  # held at the start
    assert np.abs(rows[black:, :3] - clean[black:, :3]).max() < 2.0
    blank = black_gap(inputs["emotion_video"], tmp_path / "blank.mp4", 0.0, 5.0)
    with pytest.raises(EammError, match=r"blank\.mp4: no face in any of its 29 frames$"):
        emotion_frames(blank, 64, read(blank))


@pytest.fixture
def read_only_folder(tmp_path):
    """EROFS, which permissions do not explain."""
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as folder:
        yield folder


def test_a_read_only_out_folder_is_one_line(inputs, read_only_folder):
    """It ended in 'unexpected error: OSError: [Errno 30]' naming the lock file, exit 1."""
    out = read_only_folder / "o.mp4"
    with pytest.raises(EammError, match=r"ro: output folder not writable \(Read-only file"):
        generate(inputs["photo"], inputs["audio"], None, out, inputs["models"], params=PARAMS)


def test_sigterm_stops_generation_as_ctrl_c_does(inputs, tmp_path):
    """``kill``, ``timeout`` and ``docker stop`` send SIGTERM: it killed Python alone, its ffmpeg
    went on encoding into a partial file, and the temporary WAV stayed in /tmp."""
    import signal
    import time

    speech = write_wav_s16(synth_speech(60.0, 16000, seed=3).samples, tmp_path / "long.wav")
    out = tmp_path / "out" / "talk.mp4"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    args = ["--photo", str(inputs["photo"]), "--audio", str(speech), "--out", str(out)]
    run = subprocess.Popen(
        [str(VENV_BIN / "eamm"), "generate", *args, "--checkpoints", str(inputs["models"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline:
        partial = [p for p in out.parent.glob(".talk.mp4.*") if p.stat().st_size > 0]
        if partial:
            break
        time.sleep(0.1)
    assert partial, run.communicate()
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err[-2000:]
    assert err.splitlines()[-1].startswith("error: interrupted") and "Traceback" not in err
    assert not out.parent.exists() and list((tmp_path / "tmp").iterdir()) == []
    encoders = subprocess.run(["pgrep", "-f", str(out.parent)], capture_output=True, text=True)
    assert encoders.stdout == ""  # no ffmpeg left encoding


@pytest.mark.parametrize(("width", "height", "face"), [(4000, 3000, 400), (8000, 600, 300)])
def test_a_small_face_in_a_large_photo_is_found(tmp_path, face_models, width, height, face):
    """A person in a 12-megapixel photo, a panorama: "no face in the image", the detector
    seeing the photo shrunk to 640 px. Found in tiles, aligned as the portrait alone is."""
    import cv2

    from eamm.generate import align_photo
    from eamm.sample.photos import photo

    portrait = photo("hopper")
    alone = tmp_path / "alone.png"
    cv2.imwrite(str(alone), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    canvas = np.full((height, width, 3), 90, np.uint8)
    small = cv2.resize(portrait, (face, face * portrait.shape[0] // portrait.shape[1]))
    y, x = (height - small.shape[0]) // 3, (width - face) * 2 // 3
    canvas[y : y + small.shape[0], x : x + face] = small
    crowd = tmp_path / "crowd.png"
    cv2.imwrite(str(crowd), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    expected, _, _ = align_photo(alone, 64, *face_models)
    found, _, faces = align_photo(crowd, 64, *face_models)
    mse = np.mean((found.astype(float) - expected) ** 2)
    assert faces == 1 and 10 * np.log10(255**2 / mse) > 22  # within a pixel or two


def test_an_input_hard_linked_to_an_output_is_refused(inputs, tmp_path):
    os.link(inputs["emotion_video"], tmp_path / "talk.mp4")
    with pytest.raises(EammError, match=r"--emotion-video is a video this run writes"):
        generate(
            inputs["photo"],
            inputs["audio"],
            inputs["emotion_video"],
            tmp_path / "talk.mp4",
            inputs["models"],
            params=PARAMS,
        )


def test_an_emotion_or_pose_video_with_a_cut_is_noted(inputs, tmp_path):
    """A hard cut to another face (preprocessing refuses such a clip, ``scene_cut``) fed both
    shots' faces to the emotion source and the head pose without a word; the uncut video
    gets no such note."""
    from tests.test_preprocess import sample_cut_clip

    cut, _ = sample_cut_clip(tmp_path / "cut")
    common = (inputs["photo"], inputs["audio"])
    result = generate(*common, cut, tmp_path / "talk.mp4", inputs["models"], pose_video=cut)
    said = [note for note in result.notes if "changes all at once" in note]
    assert [note.split(": ")[-1] for note in said] == [
        "the head pose follows both shots",
        "the emotion source holds both shots' faces",
    ]
    assert all(
        note.startswith(f"{cut}: the picture changes all at once at 0.60 s (") for note in said
    )
    clean = generate(*common, inputs["emotion_video"], tmp_path / "clean.mp4", inputs["models"])
    assert not [note for note in clean.notes if "changes all at once" in note]


def turned(video, out, how: str):
    """``video`` whose face, from frame 8 on, rolls past upside down (``roll``) or slides out
    of the picture (``slide``)."""
    moves = {
        "roll": "pad=iw*2:ih*2:iw/2:ih/2:color=gray,rotate=a='max(0,n-8)*PI/16':fillcolor=gray",
        "slide": "pad=iw*3:ih:iw:0:color=gray,crop=iw/3:ih:'iw/3+max(0,(n-8)*12)':0",
    }
    cmd = ["ffmpeg", "-v", "error", "-i", video, "-vf", moves[how], "-c:a", "copy", out]
    subprocess.run(cmd, check=True)
    return out


@pytest.mark.parametrize("how", ["roll", "slide"])
def test_pose_and_emotion_videos_read_faces_as_preprocessing_does(
    inputs, tmp_path, face_models, monkeypatch, how
):
    """A face leaving the picture (half of its points outside the crop) or rolling past
    upright: preprocessing writes NaN rows for those frames, generation's pose video read them
    as head poses (pitch -11..-14 for a real -8; a roll wrapping from -179 to 178, whose gap
    interpolation spun the head back through upright) and fed them to the emotion network."""
    from eamm.generate import emotion_frames, pose_video_rows, tracked_crops
    from eamm.preprocess import clip as clip_module

    params, face, backend = face_models
    video = turned(inputs["emotion_video"], tmp_path / f"{how}.mp4", how)

    def preprocess(out):
        clip_module.preprocess_clip(video, out, params=params, models=face, backend=backend)
        return np.load(out / "pose.npy")

    nan = ~np.isfinite(preprocess(tmp_path / "clip")[:, 0])
    rows, missing = pose_video_rows(video, tracked_crops(video, 30, *face_models))
    frames, left_out = emotion_frames(video, 64, tracked_crops(video, 30, *face_models))
    assert missing == left_out == nan.sum() > 5 and not nan[:12].any()
    assert len(frames) == 29 - left_out
    assert np.abs(rows[:, 2]).max() <= clip_module.MAX_ROLL
    assert np.abs(np.diff(rows[:, :3], axis=0)).max() < 15  # no wrap, no jump
    if how == "roll":  # before: every rolled frame kept, its roll wrapping past 180
        monkeypatch.setattr(clip_module, "MAX_ROLL", 360.0)
        before = preprocess(tmp_path / "before")[:, 2]
        assert np.isfinite(before).all() and np.abs(np.diff(before)).max() > 300
