"""Smoke runs of the benchmark scripts (benchmarks/train_step.py, benchmarks/loader.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LRW_MANIFEST = ROOT / "data" / "lrw" / "processed" / "manifest.parquet"


def _run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_train_step_benchmark_tiny_cpu(tmp_path):
    out = tmp_path / "steps.json"
    result = _run(
        "benchmarks/train_step.py",
        "--profile",
        "tiny",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--device",
        "cpu",
        "--json",
        str(out),
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["stage"] for r in rows] == [
        "train_fomm",
        "train_a2fd",
        "finetune_a2fd",
        "train_emotion",
    ]
    assert all(r["ms_per_step"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert all(r["batch"] == 2 for r in rows)
    assert "| train_emotion | 2 | fp32 |" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not LRW_MANIFEST.is_file(), reason=f"{LRW_MANIFEST} missing: run `make demo`")
def test_loader_benchmark_lrw(tmp_path):
    out = tmp_path / "loader.json"
    _run(
        "benchmarks/loader.py",
        "--data",
        "data",
        "--dataset",
        "lrw",
        "--stage",
        "train_a2fd",
        "--workers",
        "0",
        "--batches",
        "2",
        "--json",
        str(out),
    )
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1
    assert rows[0]["batches"] == 2 and rows[0]["samples_per_s"] > 0
