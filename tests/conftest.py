"""Shared test settings: offline Prefect/DVC environment, fixture and GPU markers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("EAMM_FIXTURES", ROOT.parent / "shared" / "fixtures"))
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one Prefect database per test worker (SQLite)
    os.environ["PREFECT_HOME"] = str(
        Path(os.environ["PREFECT_HOME"]) / "test-workers" / os.environ["PYTEST_XDIST_WORKER"]
    )
if str(VENV_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fixtures_missing = not FIXTURES.is_dir()
    try:
        import torch

        no_gpu = not torch.cuda.is_available()
    except ImportError:
        no_gpu = True
    for item in items:
        if fixtures_missing and "fixtures" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"shared fixtures not found at {FIXTURES}"))
        if no_gpu and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="no CUDA GPU available"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def sample_lrw_clip(tmp_path_factory) -> Path:
    """One LRW-layout clip (29 frames, 256 px, AAC) from the project's own sample generator:
    for tests that need real media but not EAMM's own files."""
    from eamm.config import SampleDataParams, load_section
    from eamm.sample.dataset import plan, write_clip

    params = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clip = next(c for c in plan(params) if c.dataset == "lrw")
    root = tmp_path_factory.mktemp("sample_lrw")
    write_clip(clip, root)
    return root / clip.video


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect API (own database) for every in-process flow run of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def randomise_batch_norm(net, seed: int) -> None:
    """Seeded batch-norm weights and statistics of the order trained ones have, so a randomly
    initialised reference network's outputs neither vanish nor explode (weights are compared
    through them)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for tensor in (module.weight, module.running_var):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
                for tensor in (module.bias, module.running_mean):
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)


def calibrate_batch_norm(net, inputs) -> None:
    """Batch-norm statistics measured on ``inputs`` (one pass in training mode), so a deep
    randomly initialised network's features still depend on its input instead of collapsing
    to a constant; then eval mode."""
    import torch

    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the pass
    net.train()
    with torch.no_grad():
        net(inputs)
    net.eval()


@pytest.fixture
def dvc_env(tmp_path: Path) -> dict[str, str]:
    """Environment isolating DVC from the user's global/system config and site cache."""
    dirs = {name: tmp_path / name for name in ("dvc-global", "dvc-system", "dvc-site")}
    for path in dirs.values():
        path.mkdir()
    return os.environ | {
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(dirs["dvc-global"]),
        "DVC_SYSTEM_CONFIG_DIR": str(dirs["dvc-system"]),
        "DVC_SITE_CACHE_DIR": str(dirs["dvc-site"]),
    }


def kill_group_when(run, ready, timeout: float = 300) -> None:
    """SIGKILL the process group of ``run`` (started with ``start_new_session``) as soon as
    ``ready()`` holds or the run has ended, as ``kill -9 -<pgid>`` would: its children too."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while not ready() and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted on ``folder`` with ``options`` (``size=256k``, ``ro``: a full disk, a
    read-only file system, as the kernel gives them), unmounted after; skips the test where
    mounting is not allowed (not root)."""
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
