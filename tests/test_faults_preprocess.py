"""Preprocessing under faults: a full disk, two runs on one folder, damaged shards, a raw clip
rewritten in place with the same size and mtime, and inputs refused up front (issue #15)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import eamm.preprocess.clip as clip_module
from eamm.atomic import folder_mode
from eamm.errors import EammError, EncoderError, MediaError, MissingToolError
from eamm.folder_lock import FolderLockedError, folder_lock
from eamm.manifest import members, read_rows, validate_manifest, write_manifest
from eamm.preprocess.errors import run_fault
from tests.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.slow

CLIPS = ("train/ABOUT/ABOUT_00001", "train/ABOUT/ABOUT_00002")


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    yield


def make_raw(clip: Path, root: Path, clips: int = 2) -> Path:
    """An LRW tree of copies of ``clip`` (the sample generator's), and params pointing at it."""
    for k in range(clips):
        dst = root / f"raw/lipread_mp4/ABOUT/train/ABOUT_{k + 1:05d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, dst)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["lrw"]["raw"] = str(root / "raw")
    params["datasets"]["mead"]["split_file"] = str(ROOT / "splits" / "mead_v1.yaml")
    params["preprocess"]["crop_size"] = 64
    params["preprocess_run"] = {"runner": "threads", "workers": 1, "batch_size": {"lrw": 2}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


def run(root: Path, out: Path, **run_params) -> dict:
    from flows.preprocess import run_preprocess

    if run_params:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["preprocess_run"].update(run_params)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
    return run_preprocess("lrw", str(out), params_path=str(root / "params.yaml"))


def by_id(out: Path) -> dict[str, dict]:
    return {r["clip_id"]: r for r in read_rows(out / "manifest.parquet")}


@pytest.fixture(scope="module")
def processed(sample_lrw_clip, tmp_path_factory) -> Path:
    """Both clips processed once; tests copy it (mtimes kept) before changing anything."""
    root = tmp_path_factory.mktemp("processed")
    make_raw(sample_lrw_clip, root)
    assert run(root, root / "out")["by_status"] == {"ok": 2}
    return root


def copy_of(processed: Path, tmp_path: Path) -> Path:
    shutil.copytree(processed, tmp_path / "root", symlinks=True)
    params = tmp_path / "root" / "params.yaml"
    params.write_text(params.read_text().replace(str(processed), str(tmp_path / "root")))
    return tmp_path / "root"


def fail_wav_writes(monkeypatch, clip: str, times: int) -> list[int]:
    """Make writing ``clip``'s audio.wav raise ENOSPC ``times`` times (the disk is full)."""
    write, calls = clip_module.write_wav_s16, []

    def full_disk(samples, path, rate):
        if clip in str(path) and len(calls) < times:
            calls.append(1)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write(samples, path, rate)

    monkeypatch.setattr(clip_module, "write_wav_s16", full_disk)
    return calls


def test_run_faults_are_told_apart_from_bad_clips():
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise MediaError("x.mp4", "writing the mp4 failed") from None
    except MediaError as wrapped:
        assert run_fault(wrapped) == "No space left on device"
    assert run_fault(MediaError("x.mp4", "ffmpeg failed: No space left on device"))
    assert run_fault(MemoryError()) == "out of memory (MemoryError)"
    assert run_fault(MediaError("x.mp4", "unreadable video")) is None
    assert run_fault(FileNotFoundError(errno.ENOENT, "gone")) is None
    # the machine's ffmpeg, not the clip: recorded `failed`, such clips stayed failed for good
    missing = MissingToolError("ffmpeg", "install it")
    assert run_fault(missing) == "ffmpeg not found on PATH: install it"
    died = EncoderError("x/frames.mp4", "ffmpeg exited while frames were being written")
    assert run_fault(died) == "ffmpeg exited while frames were being written"


def test_a_failing_in_process_encoder_is_a_fault_of_the_run(tmp_path, monkeypatch):
    """x264 out of memory under a memory limit ("malloc of size 600064 failed", then PyAV's
    "Generic error in an external library") was a plain MediaError: its clip recorded
    ``failed`` for good, while the same failure of the ffmpeg encoder was a run fault. The
    encoders write our own frames and samples: their failures are the run's."""
    import av

    from eamm.media.encode import PyAVVideoWriter

    writer = PyAVVideoWriter(tmp_path / "frames.mp4", 64, 64, 25)

    class OutOfMemory:  # x264 under the limit: malloc failed, PyAV's generic error
        def encode(self, frame):
            raise av.error.ExternalError(542398533, "Generic error in an external library")

    monkeypatch.setattr(writer, "_stream", OutOfMemory())
    with pytest.raises(EncoderError) as failed:
        writer.write(np.zeros((64, 64, 3), np.uint8))
    assert str(failed.value).startswith(f"{tmp_path / 'frames.mp4'}: libx264 (PyAV) failed: ")
    assert run_fault(failed.value) == failed.value.reason
    assert list(tmp_path.iterdir()) == []


def test_a_raw_clip_gone_unreadable_after_indexing_fails_alone(sample_lrw_clip, tmp_path):
    """A folder where the indexed clip was is the clip's failure: recorded, and its batch's
    other clip processed (it failed the whole batch, as if the run had, on every retry)."""
    from eamm.config import DatasetsParams, load_section
    from eamm.datasets import recipe_from_params
    from eamm.datasets.index_io import write_index

    params = make_raw(sample_lrw_clip, tmp_path)
    _, recipe = recipe_from_params("lrw", load_section(params, "datasets", DatasetsParams))
    write_index(recipe.index(tmp_path / "raw"), tmp_path / "index.parquet")
    clip = tmp_path / "raw/lipread_mp4/ABOUT/train/ABOUT_00002.mp4"
    clip.unlink()
    clip.mkdir()
    from flows.preprocess import run_preprocess

    summary = run_preprocess(
        "lrw",
        str(tmp_path / "out"),
        index_path=str(tmp_path / "index.parquet"),
        params_path=str(params),
    )
    assert summary["by_status"] == {"ok": 1, "failed": 1}
    row = by_id(tmp_path / "out")[CLIPS[1]]
    assert row["error_code"] == "unreadable_input"
    assert row["error_message"] == f"{clip}: cannot read the raw file (Is a directory)"


def test_a_full_disk_is_retried_never_recorded_and_redone(tmp_path, monkeypatch, sample_lrw_clip):
    root = tmp_path / "root"
    make_raw(sample_lrw_clip, root)
    out = root / "out"
    # passes on the task's retry: nothing is recorded as failed
    calls = fail_wav_writes(monkeypatch, "ABOUT_00002", times=1)
    assert run(root, out)["by_status"] == {"ok": 2} and calls == [1]
    assert validate_manifest(out / "manifest.parquet") == []
    # still full after the retries: the run ends with an error naming the clip and why, the
    # clip has no row (the other is kept), and the next run, with space again, redoes it
    shutil.rmtree(out)
    fail_wav_writes(monkeypatch, "ABOUT_00002", times=3)
    with pytest.raises(EammError) as raised:
        run(root, out)
    message = str(raised.value)
    assert "\n" not in message and "No space left on device: 1 clips" in message
    assert "train/ABOUT/ABOUT_00002" in message and "ABOUT_00001" not in message
    assert {k: r["status"] for k, r in by_id(out).items()} == {CLIPS[0]: "ok"}
    monkeypatch.undo()
    again = run(root, out)
    assert (again["processed"], again["reused"], again["by_status"]) == (1, 1, {"ok": 2})


def test_a_full_disk_while_packing_keeps_the_clips_for_the_next_run(
    tmp_path, monkeypatch, sample_lrw_clip
):
    """ENOSPC in the middle of writing a shard (after the task's retries): one line naming the
    shard and the reason, no partial shard left, the processed clips kept staged; the next run
    packs them without processing anything again."""
    import eamm.shards as shards_module

    root = tmp_path / "root"
    make_raw(sample_lrw_clip, root)
    out = root / "out"
    copy = shards_module._copy_into

    def full_disk(handle, source):
        copy(handle, source)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shards_module, "_copy_into", full_disk)
    with pytest.raises(EammError) as raised:
        run(root, out)
    message = str(raised.value)
    assert "\n" not in message and "packing failed" in message
    assert "No space left on device" in message and "next run packs them" in message
    assert not list(out.rglob("*.partial")) and not list(out.rglob("*.tar"))
    monkeypatch.undo()
    again = run(root, out)
    assert (again["processed"], again["reused"], again["by_status"]) == (0, 2, {"ok": 2})
    assert validate_manifest(out / "manifest.parquet") == []
    assert not list(out.rglob("*.partial"))


def test_failed_rows_of_old_runs_that_name_a_run_fault_are_redone(processed, tmp_path):
    root = copy_of(processed, tmp_path)
    out = root / "out"
    rows = by_id(out)
    # what an older version wrote after ENOSPC: a failed row that a re-run would keep
    rows[CLIPS[1]] = {
        **{k: rows[CLIPS[1]][k] for k in rows[CLIPS[1]] if not k.startswith(("member_", "shard"))},
        "status": "failed",
        "error_code": "internal_error",
        "error_message": "x.mp4: OSError(28, 'No space left on device')",
    }
    write_manifest(list(rows.values()), out / "manifest.parquet")
    problems = validate_manifest(out / "manifest.parquet", content=False)
    assert any("failed because of the run, not the clip (No space" in p for p in problems)
    again = run(root, out)
    assert (again["processed"], again["by_status"]) == (1, {"ok": 2})


def flip(path: Path, offset: int, data: bytes, keep_mtime: bool = False) -> None:
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_damaged_members_are_listed_and_redone(processed, tmp_path):
    root = copy_of(processed, tmp_path)
    out = root / "out"
    manifest = out / "manifest.parquet"
    assert validate_manifest(manifest) == []
    first = members(by_id(out)[CLIPS[0]], out)
    second = members(by_id(out)[CLIPS[1]], out)
    frames = first["frames.mp4"]
    flip(frames.shard, frames.offset + frames.size // 2, bytes(64), keep_mtime=True)
    landmarks = second["landmarks.npy"]
    flip(landmarks.shard, landmarks.offset, b"garbage!" * 4, keep_mtime=True)
    proc = subprocess.run(
        [str(VENV_BIN / "eamm"), "manifest", "validate", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"invalid: {CLIPS[0]}: frames.mp4 damaged")
    assert lines[1].startswith(f"invalid: {CLIPS[1]}: landmarks.npy damaged")
    # headers only: the frames look fine, the .npy header does not (still one line, no crash)
    quick = validate_manifest(manifest, content=False)
    assert len(quick) == 1 and "landmarks.npy has a damaged .npy header" in quick[0]
    # mtimes kept: only a content check finds them; a default re-run with the shard touched
    # (as any ordinary write does) redoes both clips, and the result verifies
    os.utime(frames.shard)
    again = run(root, out)
    assert (again["processed"], again["reused"]) == (2, 0)
    assert validate_manifest(manifest) == []


def test_manifests_without_member_hashes_are_read_and_get_them(processed, tmp_path):
    import pyarrow.parquet as pq

    root = copy_of(processed, tmp_path)
    manifest = root / "out" / "manifest.parquet"
    pq.write_table(pq.read_table(manifest).drop_columns(["member_hashes"]), manifest)
    rows = read_rows(manifest)
    assert all(r["member_hashes"] is None for r in rows)
    assert any("no member hashes" in p for p in validate_manifest(manifest))
    assert validate_manifest(manifest, content=False) == []
    again = run(root, root / "out")
    assert (again["processed"], again["reused"]) == (0, 2)
    assert validate_manifest(manifest) == []


def mp4_padded(path: Path, size: int) -> None:
    """Pad an mp4 to ``size`` bytes with a trailing ``free`` box (players skip it)."""
    missing = size - path.stat().st_size
    assert missing >= 8
    with path.open("ab") as handle:
        handle.write(struct.pack(">I4s", missing, b"free") + bytes(missing - 8))


def test_a_clip_rewritten_with_the_same_size_and_mtime_is_redone_with_content_checks(
    sample_lrw_clip, tmp_path
):
    root = tmp_path / "root"
    make_raw(sample_lrw_clip, root)
    raw = root / "raw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
    flipped = tmp_path / "flipped.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(raw), "-vf", "hflip", "-c:a", "copy", str(flipped)],
        check=True,
    )
    size = max(raw.stat().st_size, flipped.stat().st_size) + 64
    mp4_padded(raw, size)
    mp4_padded(flipped, size)
    out = root / "out"
    assert run(root, out)["by_status"] == {"ok": 2}
    stat = raw.stat()
    shutil.copyfile(flipped, raw)  # re-encoded in place ...
    os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... same size, same mtime
    assert (raw.stat().st_size, raw.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert run(root, out)["processed"] == 0  # the default judges by size and mtime
    content = run(root, out, verify_inputs="content")
    assert (content["processed"], content["reused"]) == (1, 1)
    assert run(root, out)["processed"] == 0  # and the new row is reused again


def start_run(root: Path) -> subprocess.Popen:
    """``eamm preprocess`` as a user starts it in a terminal: with Ctrl-C's default action (a
    job started in the background, as CI's is, inherits SIGINT ignored, and so would the run)."""
    import signal

    cmd = [str(VENV_BIN / "eamm"), "preprocess", "lrw", "--out", str(root / "out")]
    return subprocess.Popen(
        [*cmd, "--params", str(root / "params.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def test_a_second_run_on_the_same_folder_stops_at_once(sample_lrw_clip, tmp_path):
    root = tmp_path / "root"
    make_raw(sample_lrw_clip, root, clips=12)  # long enough to start a second run meanwhile
    first = start_run(root)
    lock = root / "out" / ".lock"
    deadline = time.time() + 180
    while not lock.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert lock.is_file(), first.communicate()
    second = start_run(root)
    _, err = second.communicate(timeout=120)
    # refused while the first still runs, in one line, before any Prefect server or work
    assert second.returncode == 2 and first.poll() is None
    assert err.count("\n") == 1 and "another preprocessing run" in err
    assert f"pid {first.pid} on {socket.gethostname()}, started " in err
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert {r["status"] for r in read_rows(root / "out/manifest.parquet")} == {"ok"}
    assert validate_manifest(root / "out/manifest.parquet") == [] and not lock.exists()


def test_ctrl_c_is_one_line_and_the_next_run_goes_on(sample_lrw_clip, tmp_path):
    import signal

    root = tmp_path / "root"
    make_raw(sample_lrw_clip, root, clips=40)  # 64-px clips take ~0.15 s: seconds to go
    first = start_run(root)
    journal = root / "out" / ".journal"
    deadline = time.time() + 180
    while first.poll() is None and time.time() < deadline:
        if any(p.stat().st_size for p in journal.glob("*.jsonl")):
            break
        time.sleep(0.1)
    # a terminal's Ctrl-C goes to the whole foreground group: it killed the temporary Prefect
    # server too, and the run hung reporting to it
    os.killpg(first.pid, signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: interrupted; what finished is kept (clips, checkpoints): run it again to go on"
    ]
    assert not (root / "out" / ".lock").exists() and "Traceback" not in err
    again = run(root, root / "out")
    assert again["by_status"] == {"ok": 40} and 1 <= again["reused"] < 40


def test_a_killed_runs_stop_marker_does_not_stop_the_next_run(sample_lrw_clip, tmp_path):
    """A run killed while leaving keeps its stop marker (``request_stop``): the next run
    clears it under the folder's lock, or its batches would return before their first clip."""
    from eamm.preprocess.batch import STOP_MARKER

    make_raw(sample_lrw_clip, tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / STOP_MARKER).touch()
    assert run(tmp_path, tmp_path / "out")["by_status"] == {"ok": 2}
    assert not (tmp_path / "out" / STOP_MARKER).exists()


def test_a_stale_lock_is_taken_over_one_from_another_host_is_not(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / ".lock"
    stale = {"pid": gone.pid, "host": socket.gethostname(), "started": "yesterday"}
    lock.write_text(json.dumps(stale))
    with folder_lock(tmp_path) as taken:
        assert taken == stale
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with (
            pytest.raises(FolderLockedError, match=f"pid {os.getpid()} on "),
            folder_lock(tmp_path),
        ):
            pass
    assert not lock.exists()
    with pytest.raises(RuntimeError), folder_lock(tmp_path):  # a failed or interrupted run
        raise RuntimeError("stopped")
    assert not lock.exists()  # the next run does not take a stale file over
    lock.write_text(json.dumps({**stale, "host": "elsewhere"}))
    with (
        pytest.raises(FolderLockedError, match="left by a run on another host"),
        folder_lock(tmp_path),
    ):
        pass
    assert json.loads(lock.read_text())["host"] == "elsewhere"  # not ours to remove


def test_bad_inputs_and_params_are_refused_in_one_line(sample_lrw_clip, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())

    def preprocess_clip(*extra: str, **preprocess) -> str:
        path = tmp_path / "params.yaml"
        path.write_text(
            yaml.safe_dump({**params, "preprocess": {**params["preprocess"], **preprocess}})
        )
        proc = subprocess.run(
            [
                str(VENV_BIN / "eamm"),
                "preprocess-clip",
                str(sample_lrw_clip),
                *("--out", str(tmp_path / "out"), "--params", str(path), *extra),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert not (tmp_path / "out").exists()
        return proc.stderr

    missing = tmp_path / "missing.m4a"
    assert f"{missing}: audio file does not exist" in preprocess_clip("--audio", str(missing))
    assert "bad value for preprocess.preset" in preprocess_clip(preset="fastest")
    err = preprocess_clip(template=str(tmp_path / "nope.npy"))
    assert "bad value for preprocess.template" in err and "nope.npy" in err


def test_two_single_clip_runs_on_one_folder_each_stage_their_own(sample_lrw_clip, tmp_path):
    """`preprocess-clip` twice at once into one folder (two shells, a retry beside a stuck
    run): each writes its own staging folder, so neither deletes the other's half-written
    outputs, and the folder ends up holding one complete result."""
    from concurrent.futures import ThreadPoolExecutor

    from eamm.config import PreprocessParams
    from eamm.preprocess.clip import preprocess_clip

    out = tmp_path / "clip"
    params = PreprocessParams(crop_size=64)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(preprocess_clip, sample_lrw_clip, out, params=params) for _ in "ab"]
        results = [run.result() for run in runs]
    assert {r.num_frames for r in results} == {29}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]
    names = ["audio.wav", "frames.mp4", "landmarks.npy", "mfcc.npy", "pose.npy"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert out.stat().st_mode & 0o777 == folder_mode()  # as mkdir makes it (0755 under 022)


def test_a_raw_dataset_in_the_out_folders_clips_is_never_deleted(sample_lrw_clip, tmp_path):
    """``--raw <out>/clips``: the end of the run removed ``<out>/clips`` whole (version 1's
    per-clip folders), the user's raw videos and notes with it; now only folders holding
    nothing but clip outputs go."""
    make_raw(sample_lrw_clip, tmp_path)
    out = tmp_path / "work"
    raw = out / "clips"
    (out).mkdir()
    shutil.move(tmp_path / "raw", raw)
    (raw / "notes.txt").write_text("mine")
    (raw / "empty").mkdir()
    legacy = raw / "lipread_mp4/ABOUT/old_v1_clip"  # a version-1 clip folder: outputs only
    legacy.mkdir()
    for name in ("frames.mp4", "audio.wav", "mfcc.npy", "landmarks.npy", "pose.npy"):
        (legacy / name).write_bytes(b"x")
    before = sorted(p for p in raw.rglob("*.mp4") if p.parent != legacy)
    from flows.preprocess import run_preprocess

    result = run_preprocess(
        "lrw", str(out), raw=str(raw), params_path=str(tmp_path / "params.yaml")
    )
    assert result["by_status"] == {"ok": 2}
    assert sorted(p for p in raw.rglob("*.mp4")) == before  # the raw clips, all there
    assert (raw / "notes.txt").read_text() == "mine" and (raw / "empty").is_dir()
    assert not legacy.exists()


def test_a_refused_deployment_run_leaves_the_index_as_it_was(sample_lrw_clip, tmp_path):
    """The deployment flow (index, then preprocess) checks the workers, the runner and the
    folder lock first: refused for them, it had already rewritten the dataset's index."""
    from flows.pipeline import preprocess_dataset_flow

    params = make_raw(sample_lrw_clip, tmp_path)
    index = tmp_path / "data" / "lrw" / "index.parquet"
    processed = tmp_path / "data" / "lrw" / "processed"
    processed.mkdir(parents=True)
    index.write_bytes(b"the earlier index")
    common = {"params_path": str(params), "data_root": str(tmp_path / "data")}
    with pytest.raises(EammError, match="workers 0"):
        preprocess_dataset_flow("lrw", workers=0, **common)
    with folder_lock(processed), pytest.raises(FolderLockedError):
        preprocess_dataset_flow("lrw", **common)
    assert index.read_bytes() == b"the earlier index"
