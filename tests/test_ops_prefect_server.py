"""Deployments for real: `prefect server`, a process work pool, `prefect deploy`, a worker.

Everything goes through the CLI as an operator types it, against a server with its own temporary
database on a loopback port; the outcome is read back through the Prefect client. A second run is
killed with its worker (SIGKILL, as on a lost machine) and run again: finished clips are reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psutil
import pytest
import yaml

from eamm.manifest import read_rows, validate_manifest
from tests.conftest import ROOT, VENV_BIN

LRW_CLIP = "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
POOL = "eamm-process"
DEPLOYMENT = "eamm-preprocess/lrw"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """End ``proc`` and everything it started (flow-run processes get their own session)."""
    if proc.poll() is not None:
        return
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.send_signal(sig)
    _, alive = psutil.wait_procs(family, timeout=5)  # then killed: a test's leftovers
    for member in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    proc.wait()


def lrw_tree(fixtures_dir: Path, root: Path, good: int, broken: int = 0) -> Path:
    for k in range(good):
        dst = root / f"lipread_mp4/ABOUT/train/ABOUT_{k + 1:05d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixtures_dir / LRW_CLIP, dst)
    for k in range(broken):
        data = (fixtures_dir / LRW_CLIP).read_bytes()
        dst = root / f"lipread_mp4/ABOUT/val/ABOUT_{k + 1:05d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data[: len(data) // 3])
    return root


def write_params(path: Path, lrw_raw: Path) -> Path:
    """One clip per task and one worker thread: a killed run stops between journaled clips."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["lrw"]["raw"] = str(lrw_raw)
    params["datasets"]["mead"]["split_file"] = str(ROOT / "splits" / "mead_v1.yaml")
    params["preprocess_run"] = {"runner": "threads", "workers": 1, "batch_size": {"lrw": 1}}
    path.write_text(yaml.safe_dump(params))
    return path


class Server:
    """A `prefect server` and the environment every CLI call and worker shares with it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.tmp = tmp
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_CLI_PROMPT": "false",
            "EAMM_PROJECT_ROOT": str(ROOT),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.procs: list[subprocess.Popen] = []

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(VENV_BIN / "prefect"), *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "prefect"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    def wait_healthy(self, proc: subprocess.Popen, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert proc.poll() is None, self.log("server")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("prefect server not healthy\n" + self.log("server"))

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def run_deployment(self, params: Path, data_root: Path) -> UUID:
        out = self.cli(
            "deployment",
            "run",
            DEPLOYMENT,
            "--param",
            f"params_path={params}",
            "--param",
            f"data_root={data_root}",
        )
        return UUID(re.search(r"UUID: ([0-9a-f-]{36})", out).group(1))

    def client(self, coro_fn, *args):
        """Run ``coro_fn(client, *args)`` against this server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        async def main():
            async with get_client() as client:
                return await coro_fn(client, *args)

        with temporary_settings({PREFECT_API_URL: self.url}):
            return asyncio.run(main())

    def wait_final(self, flow_run_id: UUID, timeout: float = 300):
        async def read(client, run_id):
            return await client.read_flow_run(run_id)

        deadline = time.time() + timeout
        while time.time() < deadline:
            run = self.client(read, flow_run_id)
            if run.state_type.value in FINAL:
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {flow_run_id} not finished\n" + self.log("worker"))


async def read_children(client, parent_id: UUID) -> dict:
    """Subflow runs of a deployment run by flow name (the last completed one where it was
    retried), each with its task runs and artifacts."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    children = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
        ),
        sort=FlowRunSort.START_TIME_ASC,
    )
    found = {}
    for run in children:
        if run.state_type.value != "COMPLETED":
            continue
        flow = await client.read_flow(run.flow_id)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
        found[flow.name] = {"run": run, "tasks": tasks, "artifacts": artifacts}
    return found


async def mark_crashed(client, parent_id: UUID) -> list[str]:
    """What the zombie automation (docs/operations.md) does once heartbeats stop: the run and
    its unfinished subflow runs become Crashed. Returns the states they were in."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.states import Crashed

    children = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id])
        )
    )
    runs = [await client.read_flow_run(parent_id), *children]
    before = [run.state_type.value for run in runs]
    for run in runs:
        if not run.state.is_final():
            await client.set_flow_run_state(run.id, Crashed(message="worker lost"), force=True)
    return before


def journaled(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (out / ".journal").glob("*.jsonl"))


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    srv = Server(tmp_path)
    try:
        port = str(srv.port)
        proc = srv.spawn("server", "server", "start", "--host", "127.0.0.1", "--port", port)
        srv.wait_healthy(proc)
        yield srv
    finally:
        for proc in reversed(srv.procs):
            stop(proc)


def test_prefect_yaml_declares_a_loadable_deployment_per_flow(monkeypatch):
    """Every entrypoint loads from the repository root and accepts its parameters."""
    from prefect.flows import load_flow_from_entrypoint

    from eamm.stages import EAMM_STAGES as STAGES
    from eamm.stages import JUDGES

    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (pull,) = config["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ $EAMM_PROJECT_ROOT }}"
    )
    deployments = {d["name"]: d for d in config["deployments"]}
    assert {"mead", "lrw", "on-new-data", "protocol", "full", *STAGES, *JUDGES} <= set(deployments)
    for name, deployment in deployments.items():
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        flow.validate_parameters(deployment["parameters"])  # raises on a wrong name or type
        assert deployment["parameters"]["params_path"] == "params.yaml", name
        assert deployment["work_pool"]["name"] == POOL, name
        if flow.name == "train-stage":
            assert deployment["parameters"]["stage"] == name
    assert {deployments[d]["parameters"]["dataset"] for d in ("mead", "lrw")} == {"mead", "lrw"}
    reprocess = deployments["on-new-data"]
    assert reprocess["schedules"][0]["active"] and reprocess["triggers"][0]["expect"]


@pytest.mark.slow
@pytest.mark.fixtures
def test_deployment_runs_on_a_worker_and_resumes_after_a_crash(server, fixtures_dir, tmp_path):
    server.cli("work-pool", "create", POOL, "--type", "process")
    deployed = server.cli("deploy", "--prefect-file", str(ROOT / "prefect.yaml"), "-n", "lrw")
    assert DEPLOYMENT in deployed
    worker = server.spawn("worker", "worker", "start", "--pool", POOL, "--name", "worker-a")

    # 1. A deployment run on three good clips and a truncated one.
    raw = lrw_tree(fixtures_dir, tmp_path / "raw_small", good=3, broken=1)
    params = write_params(tmp_path / "params_small.yaml", raw)
    data = tmp_path / "data_small"
    run = server.wait_final(server.run_deployment(params, data))
    assert run.state_type.value == "COMPLETED", server.log("worker")
    assert run.parameters["dataset"] == "lrw"
    children = server.client(read_children, run.id)
    assert set(children) == {"index-dataset", "preprocess-lrw"}
    assert all(c["run"].state_type.value == "COMPLETED" for c in children.values())
    task_runs = children["preprocess-lrw"]["tasks"]
    batches = [t for t in task_runs if t.name.startswith("preprocess-batch")]
    packs = [t for t in task_runs if t.name.startswith("pack-shard")]
    assert len(batches) == 4  # one clip per task
    assert len(packs) == 1 and len(task_runs) == 5  # the three good clips share one shard
    for task_run in task_runs:
        # retries are configured; a bad clip is a result (status failed), never a retried task
        assert task_run.state_type.value == "COMPLETED"
        assert (task_run.run_count, task_run.empirical_policy.retries) == (1, 2)
    (artifact,) = children["preprocess-lrw"]["artifacts"]
    assert artifact.key == "preprocess-lrw"
    assert "| ok | 3 |" in artifact.data and "| failed | 1 |" in artifact.data
    assert "processed 4, reused 0" in artifact.data
    manifest = data / "lrw/processed/manifest.parquet"
    assert validate_manifest(manifest) == []
    assert sorted(r["status"] for r in read_rows(manifest)) == ["failed", "ok", "ok", "ok"]

    # 2. A longer run whose worker (and flow-run process) is killed mid-flight ...
    raw = lrw_tree(fixtures_dir, tmp_path / "raw_big", good=12)
    params = write_params(tmp_path / "params_big.yaml", raw)
    data = tmp_path / "data_big"
    out = data / "lrw/processed"
    crashed_id = server.run_deployment(params, data)
    deadline = time.time() + 240
    while time.time() < deadline and journaled(out) < 2:
        assert worker.poll() is None, server.log("worker")
        time.sleep(0.2)
    stop(worker, signal.SIGKILL)
    done_before = journaled(out)
    assert 2 <= done_before < 12, "the run should be killed mid-flight"

    assert server.client(mark_crashed, crashed_id)[0] == "RUNNING"

    # ... is retried (same flow run, a new worker): only the clips not journaled are processed.
    server.spawn("worker", "worker", "start", "--pool", POOL, "--name", "worker-b")
    server.cli("flow-run", "retry", str(crashed_id))
    rerun = server.wait_final(crashed_id)
    assert rerun.state_type.value == "COMPLETED", server.log("worker")
    assert rerun.run_count == 2
    (artifact,) = server.client(read_children, rerun.id)["preprocess-lrw"]["artifacts"]
    assert f"processed {12 - done_before}, reused {done_before}" in artifact.data
    rows = read_rows(out / "manifest.parquet")
    assert len(rows) == 12 and all(r["status"] == "ok" for r in rows)
    assert validate_manifest(out / "manifest.parquet") == []
    assert not (out / ".journal").exists()
