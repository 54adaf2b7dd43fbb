"""DVC data sharing with the real CLI: a local-directory remote round trip between two clones of
this repository, and a smoke run of benchmarks/dvc_status.py.

The round trip runs the `sample_data` stage (a folder tree and a file as cached outputs, a metric
committed to git) in a first clone, pushes it to a remote, commits dvc.lock and the remote
config, clones that clone and pulls: the files must be identical and DVC must have nothing to do.
DVC's global and system config are pointed at empty folders so a user-level `cache.dir` or remote
cannot leak in; each clone keeps its own `.dvc/cache`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGE = "sample_data"
STAGE_FILES = ("data/sample/raw", "data/sample/portrait.png", "data/sample/summary.json")
GIT_USER = ("-c", "user.name=eamm tests", "-c", "user.email=tests@eamm.invalid")


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_USER, *args], cwd=cwd, check=True, capture_output=True)


def _dvc(cwd: Path, env: dict[str, str], *args: str) -> str:
    """The DVC CLI of this interpreter; fails the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dvc {' '.join(args)} in {cwd}:\n{output}"
    return output


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file of the stage's outputs, by path relative to ``root``."""
    digests = {}
    for name in STAGE_FILES:
        top = root / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                digests[path.relative_to(root).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return digests


@pytest.mark.slow
def small_sample(params_path: Path) -> None:
    """Two MEAD speakers and one LRW word: the same stage and layouts in a tenth of the time."""
    params = yaml.safe_load(params_path.read_text())
    sample = params["sample_data"]
    sample["mead"]["speakers"] = dict(list(sample["mead"]["speakers"].items())[:2])
    sample["lrw"]["words"] = sample["lrw"]["words"][:1]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_push_pull_round_trip_leaves_nothing_to_reproduce(tmp_path, dvc_env):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    first, second, remote = tmp_path / "first", tmp_path / "second", tmp_path / "remote"
    _git(tmp_path, "clone", "-q", str(ROOT), str(first))
    small_sample(first / "params.yaml")
    _git(first, "commit", "-q", "-am", "a smaller sample dataset")

    _dvc(first, dvc_env, "repro", STAGE)
    _dvc(first, dvc_env, "remote", "add", "-d", "local", str(remote))
    _dvc(first, dvc_env, "push", STAGE)
    assert "Cache and remote 'local' are in sync." in _dvc(
        first, dvc_env, "status", "--cloud", STAGE
    )
    assert any(p.is_file() for p in (remote / "files" / "md5").rglob("*"))
    _git(first, "add", "dvc.lock", ".dvc/config", "data/sample/summary.json")
    _git(first, "commit", "-q", "-m", "sample data pushed to the local remote")

    _git(tmp_path, "clone", "-q", str(first), str(second))
    assert not (second / "data" / "sample" / "raw").exists()
    assert not (second / ".dvc" / "cache").exists()
    _dvc(second, dvc_env, "pull", STAGE)

    expected = _digests(first)
    assert len(expected) > 10
    assert _digests(second) == expected
    assert (second / ".dvc" / "cache" / "files" / "md5").is_dir()
    assert "Data and pipelines are up to date." in _dvc(second, dvc_env, "status", STAGE)
    repro = _dvc(second, dvc_env, "repro", STAGE)
    assert f"Stage '{STAGE}' didn't change, skipping" in repro
    assert "Running stage" not in repro


@pytest.mark.slow
def test_dvc_status_benchmark_smoke(tmp_path, dvc_env):
    out = tmp_path / "dvc_status.json"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/dvc_status.py",
            "--clips",
            "50",
            "--runs",
            "1",
            "--cold-runs",
            "1",
            "--consumers",
            "1",
            "--clips-per-tar",
            "20",
            "--workdir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=dvc_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["clips"] == 50
    assert data["files"] == 50 * 5 + 1
    assert data["dvc_version"].startswith("3.")
    rows = {row["layout"]: row for row in data["layouts"]}
    assert set(rows) == {"flat", "manifest", "sharded", "packed"}
    for row in rows.values():
        for key in ("status_s", "status_cold_s", "repro_s", "repro_cold_s", "commit_s"):
            assert row[key] > 0
    assert rows["flat"]["files"] == 50 * 5 + 1
    # 20 clips per word, split like LRW: W0000 and W0001 have train, val and test clips,
    # W0002 (10 clips) only train ones: 7 shards + the manifest
    assert rows["packed"]["files"] == 7 + 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("dvc-status-")] == []
