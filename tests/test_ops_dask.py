"""The preprocess flow on a real Dask cluster (scheduler + two worker processes on loopback).

The cluster is started with the `dask` CLI as an operator would, the runner comes from
``$EAMM_TASK_RUNNER``, and the outputs must equal those of the local threads run byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from eamm.manifest import read_rows, validate_manifest
from tests.conftest import ROOT, VENV_BIN

pytestmark = [pytest.mark.fixtures, pytest.mark.slow]

distributed = pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

LRW_CLIP = "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def lrw_raw(fixtures_dir, tmp_path_factory) -> Path:
    """Clips of different content (flipped, shifted) so equal hashes mean something."""
    root = tmp_path_factory.mktemp("raw") / "lipread_mp4"
    source = fixtures_dir / LRW_CLIP
    for word, split in (
        ("ABOUT", "train"),
        ("ABOUT", "val"),
        ("WORLD", "test"),
        ("WORLD", "train"),
    ):
        (root / word / split).mkdir(parents=True)
    for rel in ("ABOUT/train/ABOUT_00001", "ABOUT/val/ABOUT_00001", "WORLD/test/WORLD_00001"):
        shutil.copy(source, root / f"{rel}.mp4")
    flipped, shifted = root / "ABOUT/train/ABOUT_00002.mp4", root / "WORLD/train/WORLD_00001.mp4"
    ffmpeg("-i", str(source), "-vf", "hflip", "-c:a", "copy", str(flipped))
    ffmpeg("-ss", "0.2", "-i", str(source), str(shifted))
    data = source.read_bytes()
    (root / "WORLD/train/WORLD_00002.mp4").write_bytes(data[: len(data) // 3])
    return root.parent


@pytest.fixture(scope="module")
def params(lrw_raw, tmp_path_factory) -> Path:
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings["datasets"]["lrw"]["raw"] = str(lrw_raw)
    settings["datasets"]["mead"]["split_file"] = str(ROOT / "splits" / "mead_v1.yaml")
    settings["preprocess_run"] = {"runner": "threads", "workers": 2, "batch_size": {"lrw": 1}}
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """`dask scheduler` and two single-thread `dask worker` processes; yields the address."""
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        # Workers unpickle tasks that import `tasks` and `eamm`: the checkout must be importable.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    dask = str(VENV_BIN / "dask")
    commands = [
        [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1]],
        *(
            [dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--name", f"w{k}"]
            for k in (1, 2)
        ),
    ]
    for cmd in commands:
        cmd.append("--no-dashboard")
    procs = []
    try:
        for k, cmd in enumerate(commands):
            log = (logs / f"{k}.log").open("ab")
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        with distributed.Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]
            for member in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.terminate()
            _, alive = psutil.wait_procs(family, timeout=20)
            for member in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    yield


def outputs(root: Path) -> dict[str, str]:
    """Hash of every shard (crops video, landmarks, pose, audio, MFCC of its clips) by path."""
    return {
        str(p.relative_to(root)): hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
        for p in sorted((root / "shards").rglob("*.tar"))
    }


def rows(root: Path) -> list[dict]:
    return read_rows(root / "manifest.parquet")


class Executed(distributed.WorkerPlugin):
    """Records the keys of the tasks each worker finished (the worker imports this module)."""

    name = "eamm-executed"

    def setup(self, worker) -> None:
        self.keys: list[str] = []

    def transition(self, key, start: str, finish: str, **kwargs) -> None:
        if finish == "memory":
            self.keys.append(str(key))


def executed(client) -> dict[str, int]:
    """preprocess-batch tasks finished, by worker name."""
    names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
    keys = client.run(lambda dask_worker: dask_worker.plugins[Executed.name].keys)
    return {names[addr]: sum("preprocess" in k for k in found) for addr, found in keys.items()}


def test_dask_cluster_run_equals_local_threads_run(cluster, params, tmp_path, monkeypatch):
    from flows.preprocess import run_preprocess

    local = tmp_path / "local"
    local_summary = run_preprocess("lrw", str(local), params_path=str(params))

    monkeypatch.setenv("EAMM_TASK_RUNNER", cluster)
    remote = tmp_path / "dask"
    with distributed.Client(cluster, timeout=60) as client:
        client.register_plugin(Executed())
        remote_summary = run_preprocess("lrw", str(remote), params_path=str(params))
        ran = executed(client)

    assert local_summary["by_status"] == {"failed": 1, "ok": 5}
    assert remote_summary["by_status"] == local_summary["by_status"]
    assert remote_summary["processed"] == 6
    # every batch (one clip each) ran on the cluster, spread over both worker processes
    assert sum(ran.values()) == 6 and sorted(ran) == ["w1", "w2"] and min(ran.values()) > 0
    assert validate_manifest(remote / "manifest.parquet") == []
    assert rows(remote) == rows(local)
    hashes = outputs(remote)
    shards = {r["shard"] for r in rows(remote) if r["status"] == "ok"}
    assert sorted(hashes) == sorted(shards) and hashes == outputs(local)
