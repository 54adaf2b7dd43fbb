"""Dataset flows for real (Prefect ephemeral API, DVC): index -> batches -> manifest."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from eamm.manifest import RUN_LOG_NAME, members, read_rows, read_run_log, validate_manifest
from tests.conftest import ROOT, VENV_BIN
from tests.test_dvc_remote import _dvc, _git

pytestmark = [pytest.mark.fixtures, pytest.mark.slow]

MEAD_CLIP = "mead/M030/video/front/sad/level_3/001.mp4"
MEAD_AUDIO = "mead/M030/audio/sad/level_3/001.m4a"
LRW_CLIP = "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def place(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


def truncate(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 3])


def write_params(path: Path, mead_raw: Path, lrw_raw: Path, **preprocess) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["mead"]["raw"] = str(mead_raw)
    params["datasets"]["mead"]["split_file"] = str(ROOT / "splits" / "mead_v1.yaml")
    params["datasets"]["lrw"]["raw"] = str(lrw_raw)
    params["preprocess"].update(preprocess)
    params["preprocess_run"] = {
        "runner": "threads",
        "workers": 2,
        "batch_size": {"mead": 2, "lrw": 2},
    }
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def trees(fixtures_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    mead = base / "mead"
    clip = fixtures_dir / MEAD_CLIP
    place(clip, mead / "M030/video/front/sad/level_3/001.mp4")
    place(fixtures_dir / MEAD_AUDIO, mead / "M030/audio/sad/level_3/001.m4a")
    place(clip, mead / "M003/video/front/happy/level_2/005.mp4")  # test speaker, no .m4a
    truncate(clip, mead / "M030/video/front/sad/level_3/002.mp4")
    (mead / "M030/video/front/sad/level_3/003.mp4").touch()
    (mead / "M030/video/front/sad/level_3/004.mp4").write_text("not a video\n")
    silent = mead / "M030/video/front/angry/level_1/006.mp4"
    silent.parent.mkdir(parents=True)
    ffmpeg("-i", str(clip), "-an", "-c:v", "copy", str(silent))
    place(clip, mead / "M030/video/front/joyful/level_1/001.mp4")

    lrw = base / "lrw"
    source = fixtures_dir / LRW_CLIP
    for rel in (
        "ABOUT/train/ABOUT_00001",
        "ABOUT/train/ABOUT_00002",
        "ABOUT/val/ABOUT_00001",
        "WORLD/test/WORLD_00001",
    ):
        place(source, lrw / "lipread_mp4" / f"{rel}.mp4")
    (lrw / "lipread_mp4/ABOUT/train/ABOUT_00001.txt").write_text("Duration: 0.3 seconds\n")
    truncate(source, lrw / "lipread_mp4/WORLD/train/WORLD_00002.mp4")
    place(source, lrw / "lipread_mp4/hello/train/hello_00001.mp4")
    params = write_params(base / "params.yaml", mead, lrw)
    return {"mead": mead, "lrw": lrw, "params": params, "base": base}


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    yield


def run(dataset: str, out: Path, trees: dict, **kwargs) -> dict:
    from flows.preprocess import run_preprocess

    return run_preprocess(dataset, str(out), params_path=str(trees["params"]), **kwargs)


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["clip_id"]: r for r in rows}


def shard_states(root: Path) -> dict[str, tuple[int, str]]:
    """Shard path -> (mtime in ns, content hash): shows which shards a run rewrote."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_mtime_ns,
            hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest(),
        )
        for p in sorted((root / "shards").rglob("*.tar"))
    }


def test_mead_flow_records_every_clip_with_status_and_reason(trees, tmp_path):
    out = tmp_path / "mead"
    summary = run("mead", out, trees)
    rows = by_id(read_rows(out / "manifest.parquet"))
    assert set(rows) == {
        "M003/front/happy/level_2/005",
        "M030/front/angry/level_1/006",
        "M030/front/sad/level_3/001",
        "M030/front/sad/level_3/002",
        "M030/front/sad/level_3/003",
        "M030/front/sad/level_3/004",
    }
    good = rows["M030/front/sad/level_3/001"]
    assert (good["status"], good["split"], good["audio_source"]) == ("ok", "test", "file")
    assert (good["n_frames_in"], good["n_frames"], good["n_mfcc_windows"]) == (112, 93, 93)
    assert good["source_fingerprint"] and good["param_fingerprint"]
    fallback = rows["M003/front/happy/level_2/005"]
    assert (fallback["status"], fallback["audio_source"]) == ("ok", "video")
    codes = {k: r["error_code"] for k, r in rows.items() if r["status"] == "failed"}
    assert codes == {
        "M030/front/angry/level_1/006": "no_audio",
        "M030/front/sad/level_3/002": "unreadable_video",
        "M030/front/sad/level_3/003": "unreadable_video",
        "M030/front/sad/level_3/004": "unreadable_video",
    }
    assert "zero-length" in rows["M030/front/sad/level_3/003"]["error_message"]
    assert validate_manifest(out / "manifest.parquet") == []
    assert summary["by_status"] == {"failed": 4, "ok": 2}
    report = (out / "index_report.json").read_text()
    assert "joyful" in report


def test_lrw_flow_is_incremental_and_deterministic(trees, tmp_path):
    out = tmp_path / "lrw"
    first = run("lrw", out, trees)
    assert first["by_status"] == {"failed": 1, "ok": 4} and first["processed"] == 5
    assert validate_manifest(out / "manifest.parquet") == []
    shards = shard_states(out)
    assert sorted(shards) == [
        "shards/test/WORLD.tar",
        "shards/train/ABOUT.tar",
        "shards/val/ABOUT.tar",
    ]
    assert not (out / ".staging").exists() and not (out / ".journal").exists()
    again = run("lrw", out, trees)
    assert (again["processed"], again["reused"]) == (0, 5)
    assert (again["shards"], again["shards_written"]) == (3, 0)
    assert shard_states(out) == shards  # not rewritten
    # A new clip in the raw folder: only it is processed, only its shard is written.
    added = trees["lrw"] / "lipread_mp4/WORLD/val/WORLD_00003.mp4"
    place(trees["lrw"] / "lipread_mp4/ABOUT/train/ABOUT_00002.mp4", added)
    try:
        third = run("lrw", out, trees)
    finally:
        added.unlink()
    assert (third["processed"], third["reused"]) == (1, 5)
    assert (third["shards"], third["shards_written"]) == (4, 1)
    assert shard_states(out) == {
        **shards,
        "shards/val/WORLD.tar": shard_states(out)["shards/val/WORLD.tar"],
    }
    assert validate_manifest(out / "manifest.parquet") == []
    # The clip is gone again: its shard goes, the others stay untouched.
    fourth = run("lrw", out, trees)
    assert (fourth["processed"], fourth["reused"]) == (0, 5)
    assert (fourth["shards"], fourth["shards_written"]) == (3, 0)
    assert shard_states(out) == shards
    # A run that redoes nothing leaves the manifest's bytes as they were (DVC sees no change);
    # the timings and mtimes it re-reads live in the run log beside it.
    manifest = (out / "manifest.parquet").read_bytes()
    assert run("lrw", out, trees)["processed"] == 0
    assert (out / "manifest.parquet").read_bytes() == manifest
    assert set(read_run_log(out / RUN_LOG_NAME)) == {
        r["clip_id"] for r in read_rows(out / "manifest.parquet")
    }
    # A fresh run over the same inputs gives the same manifest.
    fresh = tmp_path / "fresh"
    run("lrw", fresh, trees)
    first_rows = [
        r for r in read_rows(out / "manifest.parquet") if "WORLD_00003" not in r["clip_id"]
    ]
    assert first_rows == read_rows(fresh / "manifest.parquet")
    assert {k: v[1] for k, v in shard_states(fresh).items()} == {k: v[1] for k, v in shards.items()}


def test_killed_run_resumes_without_redoing_finished_clips(trees, tmp_path, fixtures_dir):
    raw = tmp_path / "raw"
    for k in range(10):
        place(fixtures_dir / LRW_CLIP, raw / f"lipread_mp4/ABOUT/train/ABOUT_{k + 1:05d}.mp4")
    params = write_params(tmp_path / "params.yaml", trees["mead"], raw)
    out = tmp_path / "out"
    cmd = [
        str(VENV_BIN / "eamm"),
        "preprocess",
        "lrw",
        "--out",
        str(out),
        "--params",
        str(params),
        "--workers",
        "1",
        "--runner",
        "threads",
    ]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = out / ".journal"
    deadline = time.time() + 240
    finished = 0
    while time.time() < deadline and proc.poll() is None:
        finished = sum(len(p.read_text().splitlines()) for p in journal.glob("*.jsonl"))
        if finished >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= finished < 10, "the run should be killed mid-flight"
    done_before = sum(len(p.read_text().splitlines()) for p in journal.glob("*.jsonl"))

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_rows(out / "manifest.parquet")
    assert len(rows) == 10 and all(r["status"] == "ok" for r in rows)
    assert f"reused {done_before}" in result.stdout.replace("\n", " ")
    assert f"processed {10 - done_before}" in result.stdout.replace("\n", " ")
    assert list(out.rglob("*.partial")) == [] and not journal.exists()
    assert validate_manifest(out / "manifest.parquet") == []


def test_dvc_reruns_preprocessing_only_when_params_change(trees, tmp_path):
    """Also: a project and a raw folder whose paths hold spaces (the stages' commands quote)."""
    work = tmp_path / "my project"
    work.mkdir()
    for name in ("eamm", "flows", "tasks", "splits"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work)
    lrw = shutil.copytree(trees["lrw"], tmp_path / "raw data" / "lrw")
    write_params(work / "params.yaml", trees["mead"], lrw)
    env = dict(os.environ, EAMM_PROJECT_ROOT=str(work), PREFECT_HOME=str(tmp_path / "prefect"))

    def dvc(*args: str) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "dvc"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    dvc("init", "--no-scm", "-q")
    dvc("config", "core.analytics", "false")
    first = dvc("repro", "preprocess_lrw")
    assert "Running stage 'index_lrw'" in first and "Running stage 'preprocess_lrw'" in first
    manifest = work / "data/lrw/processed/manifest.parquet"
    assert validate_manifest(manifest) == []
    assert "Running stage" not in dvc("repro", "preprocess_lrw")

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["preprocess"]["crop_size"] = 128
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    third = dvc("repro", "preprocess_lrw")
    assert "Running stage 'preprocess_lrw'" in third and "Running stage 'index_lrw'" not in third
    import av

    row = next(r for r in read_rows(manifest) if r["status"] == "ok")
    frames = members(row, work / "data/lrw/processed")["frames.mp4"]
    with av.open(io.BytesIO(frames.read())) as video:
        assert video.streams.video[0].codec_context.width == 128


def test_a_raw_tree_in_dvcs_symlink_cache_is_preprocessed(trees, tmp_path, dvc_env):
    """DVC's advice for large datasets (`cache.type symlink`) turns every raw clip into a link
    into `.dvc/cache`, outside the raw folder: the clips are indexed and processed through
    their links, and a second run reuses them."""
    project = tmp_path / "project"
    raw = project / "raw"
    shutil.copytree(trees["lrw"] / "lipread_mp4/ABOUT/train", raw / "lipread_mp4/ABOUT/train")
    _git(project, "init", "-q")
    for args in (("init", "-q"), ("config", "cache.type", "symlink"), ("add", "-q", "raw")):
        _dvc(project, dvc_env, *args)
    linked = raw / "lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
    assert linked.is_symlink() and ".dvc" in os.readlink(linked)
    params = yaml.safe_load(trees["params"].read_text())
    params["datasets"]["lrw"]["raw"] = str(raw)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    tree = {**trees, "params": tmp_path / "params.yaml"}
    out = tmp_path / "out"
    first = run("lrw", out, tree)
    assert first["by_status"] == {"ok": 2} and first["processed"] == 2
    assert json.loads((out / "index_report.json").read_text())["problems"] == []
    assert validate_manifest(out / "manifest.parquet") == []
    again = run("lrw", out, tree)
    assert (again["processed"], again["reused"]) == (0, 2)


def test_shards_the_pipeline_did_not_write_are_left_alone(trees, tmp_path):
    """Stale shards are those a previous record names; a .tar no record names (a user's own
    WebDataset shards in the folder given as --out) stays, byte for byte."""
    out = tmp_path / "lrw"
    theirs = {out / "shards/train/theirs.tar": b"their shard", out / "shards/x/y.tar": b"more"}
    for path, data in theirs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert run("lrw", out, trees)["by_status"] == {"failed": 1, "ok": 4}
    assert (out / "shards/train/ABOUT.tar").is_file()
    assert all(path.read_bytes() == data for path, data in theirs.items())
    assert validate_manifest(out / "manifest.parquet") == [  # named, not deleted
        "shards/train/theirs.tar: shard that no ok row accounts for",
        "shards/x/y.tar: shard that no ok row accounts for",
    ]
