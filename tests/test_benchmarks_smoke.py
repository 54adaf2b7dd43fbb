"""Smoke runs of the benchmark scripts on tiny input: they run and write their JSON keys.

No timed assertions: the numbers live in benchmarks/results and docs/performance.md.
"""

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


# 8 frames: preprocess_clip refuses clips under min_frames (7)
TINY = ["--fixtures", "lrw_256p", "--frames", "8", "--repeats", "1", "--warmup", "0"]


def _json(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert {"cpu", "cores", "loadavg_1_5_15"} <= set(data["meta"])
    return data


@pytest.mark.slow
@pytest.mark.fixtures
def test_preprocess_recipe_benchmark_tiny(tmp_path):
    out = tmp_path / "recipe.json"
    _run("benchmarks/preprocess_recipe.py", *TINY, "--json", str(out))
    (row,) = _json(out)["rows"]
    assert row["frames"] == 8 and row["fps_per_core"] > 0 and row["peak_rss_mib"] > 0
    assert set(row["steps"]) == {"read", "detect", "warp", "png", "audio", "mfcc"}


@pytest.mark.slow
@pytest.mark.fixtures
def test_preprocess_floor_benchmark_tiny(tmp_path):
    out = tmp_path / "floor.json"
    _run("benchmarks/preprocess_floor.py", *TINY, "--json", str(out))
    (row,) = _json(out)["rows"]
    assert set(row["cases"]) == {
        "decode_ffmpeg",
        "decode",
        "decode_warp",
        "encode",
        "landmarker",
        "onepass",
        "floor",
    }
    assert all(case["fps_per_core"] > 0 for case in row["cases"].values())


@pytest.mark.slow
@pytest.mark.fixtures
def test_preprocess_ours_benchmark_tiny(tmp_path):
    out = tmp_path / "ours.json"
    _run("benchmarks/preprocess_ours.py", *TINY, "--long", "2", "--json", str(out))
    rows = _json(out)["rows"]
    assert [r["frames"] for r in rows] == [8, 16]  # the fixture, then it concatenated twice
    assert rows[0]["fps_per_core"] > 0 and rows[1]["peak_rss_mib"] > 0
    assert {"decode", "detect", "warp", "encode", "landmarks", "pose", "mfcc"} <= set(
        rows[0]["steps"]
    )


@pytest.mark.slow
@pytest.mark.fixtures
def test_preprocess_flow_benchmark_tiny(tmp_path):
    out = tmp_path / "flow.json"
    args = ["--datasets", "lrw", "--copies", "1", "--scale", "2", "--workers", "1"]
    _run("benchmarks/preprocess_flow.py", *args, "--frames", "8", "--json", str(out))
    data = _json(out)
    small, large = data["rows"]
    assert small["clips"] == small["ok"] == 1 and small["input_frames"] == 8
    assert large["clips"] == large["ok"] == 2 and large["input_frames"] == 16
    assert {"flow_wall_s", "clip_work_s", "overhead_pct", "peak_rss_mib"} <= set(small)
    # the fit is a line through both runs: it reproduces each run's overhead
    (fit,) = data["fits"]
    assert (fit["dataset"], fit["workers"], fit["clips"]) == ("lrw", 1, [1, 2])
    for row in (small, large):
        predicted = fit["fixed_overhead_s"] + fit["per_clip_overhead_ms"] / 1000 * row["clips"]
        assert predicted == pytest.approx(row["overhead_s"])


@pytest.mark.slow
def test_generate_speed_benchmark_tiny_cpu(tmp_path):
    out = tmp_path / "generate.json"
    args = ["--profile", "tiny", "--device", "cpu", "--seconds", "1"]
    _run(
        "benchmarks/generate.py",
        *args,
        "--configs",
        "fp32:4",
        "channels_last+bf16:4",
        "--json",
        str(out),
    )
    rows = _json(out)["rows"]
    assert [(r["variant"], r["batch"], r["device"]) for r in rows] == [
        ("fp32", 4, "cpu"),
        ("bf16+channels_last", 4, "cpu"),
    ]
    for row in rows:
        assert "error" not in row and row["frames"] == 25 and row["renders_per_frame"] == 2
        assert row["x_realtime"] == pytest.approx(row["fps"] / 25)
        assert row["fps"] == pytest.approx(25 / row["wall_s"])
        assert row["peak_rss_mib"] > row["rss_before_mib"] > 0 and row["cuda_peak_mib"] is None
        assert row["render_calls"] == 2 * 7  # neutral and emotion, 25 frames in batches of 4
        assert 0 < row["render_s"] < row["wall_s"]
        assert row["other_s"] == pytest.approx(row["wall_s"] - row["render_s"])
        assert row["render_ms_per_frame"] > 0 and row["keypoints_ms_per_frame"] > 0
    assert rows[0]["psnr_vs_fp32_db"] is None  # fp32 is the reference
    assert rows[1]["psnr_vs_fp32_db"] > 30  # bf16 renders close to fp32


def test_report_renders_generate_speed(tmp_path):
    from benchmarks.report import render

    row = {"profile": "reference", "audio_s": 2.0, "emotion": True, "device": "cpu", "frames": 50}
    row |= {"device_name": "x", "torch_threads": 1, "peak_rss_mib": 900.0, "cuda_peak_mib": None}
    row |= {"render_ms_per_frame": 1000.0, "keypoints_ms_per_frame": 60.0, "other_s": 5.0}
    row |= {"render_first_s": 8.0, "psnr_vs_fp32_db": None}
    rows = [
        row | {"variant": "fp32", "batch": 8, "fps": 0.5, "x_realtime": 0.02},
        row | {"variant": "bf16", "batch": 8, "fps": 1.5, "x_realtime": 0.06},
        {"profile": "reference", "variant": "compile", "batch": 8, "audio_s": 2.0}
        | {"emotion": True, "device": "cpu", "error": "RuntimeError: no compiler"},
    ]
    (tmp_path / "generate.json").write_text(json.dumps({"meta": {"cpu": "x"}, "rows": rows}))
    text = render(tmp_path)
    assert "## Generation: frames per second" in text
    assert "| **0.060x** | 1.50 | 900 | cpu | bf16 | 8 | 2 | 50 | 3.00x (batch 8) | 1000 |" in text
    assert "| failed | - | - | cpu | compile | 8 | 2 |" in text
    assert "Fastest on cpu (x, 1 torch threads) for 2 s of speech: bf16 at batch 8, 0.060x" in text


def test_report_renders_available_results(tmp_path):
    from benchmarks.report import render

    row = {"fixture": "lrw_256p", "frames": 29, "cpu_s": 0.5, "wall_s": 0.6}
    row |= {"fps_per_core": 58.0, "fps_wall": 48.3, "peak_rss_mib": 300.0}
    ours = {"meta": {"cpu": "x", "cores": 2}, "rows": [row | {"steps": {"decode": {"cpu_s": 0.1}}}]}
    recipe = {"meta": {}, "rows": [row | {"fps_per_core": 29.0, "steps": {"warp": {"cpu_s": 0.2}}}]}
    dvc = {"meta": {}, "rows": [{"clips": 20000, "dvc_status_s": 1.5}]}
    fit = {"dataset": "lrw", "workers": 2, "clips": [64, 256], "fixed_overhead_s": 3.3}
    fit |= {"per_clip_wall_ms": 371.0, "per_clip_overhead_ms": 4.5, "overhead_at_scale_pct": 1.2}
    flow = {"meta": {}, "rows": [], "fits": [fit]}
    for name, data in (
        ("preprocess_ours", ours),
        ("preprocess_recipe", recipe),
        ("dvc_status", dvc),
        ("preprocess_flow", flow),
    ):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    text = render(tmp_path)
    # ratios first: ours / recipe, its target, ours / floor, then the absolute rates
    lrw = "| LRW 256p (ABOUT_00001) | **2.00x** | >= 1.5x: met | - | 58.0 (48.3 wall) | 29.0"
    assert lrw in text
    assert "| 20000 | 1.5 |" in text
    assert "| lrw | 2 | 64 and 256 | 3.3 | 371.0 | 4.5 | 1.2 % | met |" in text


ORCHESTRATION_KEYS = {
    "clips",
    "ok",
    "workers",
    "index_wall_s",
    "flow_wall_s",
    "ms_per_clip",
    "flow_peak_rss_mib",
    "server_peak_rss_mib",
    "prefect_db_mib",
    "manifest_mib",
    "rerun_wall_s",
    "rerun_processed",
    "rerun_reused",
}


@pytest.mark.slow
def test_orchestration_benchmark_tiny(tmp_path):
    out = tmp_path / "orchestration.json"
    args = ["--clips", "50", "--workers", "2", "--work", str(tmp_path), "--out", str(out)]
    result = _run("benchmarks/orchestration.py", *args)
    data = _json(out)
    (row,) = data["rows"]
    assert set(row) >= ORCHESTRATION_KEYS
    # the real flow ran on every clip with the stand-in worker: 50 ok manifest rows
    assert row["clips"] == row["ok"] == row["processed"] == 50
    assert row["shards"] == 50  # 500 words: one train clip per word, one shard each
    assert row["rerun_processed"] == 0 and row["rerun_reused"] == 50
    assert row["rerun_shards_written"] == 0
    # and once more in a fresh process, as a user's second run: its own peak RSS
    assert row["fresh_rerun_reused"] == 50 and row["rerun_peak_rss_mib"] > 0
    assert row["flow_wall_s"] > 0 and row["ms_per_clip"] == pytest.approx(
        1000 * row["flow_wall_s"] / 50
    )
    assert row["flow_peak_rss_mib"] > 0 and row["prefect_db_mib"] > 0 and row["manifest_mib"] > 0
    assert row["server_peak_rss_mib"] > 0  # the temporary server was found and sampled
    assert set(data["fits"]) >= {"flow_wall_s", "flow_peak_rss_mib"}
    assert data["fits"]["flow_wall_s"] is None  # one size: nothing to fit
    assert "| 50 | " in result.stdout
    assert not list(tmp_path.glob("eamm-orch-*"))  # trees removed


def test_orchestration_fit_is_least_squares():
    code = (
        "import sys, json; sys.path.insert(0, 'benchmarks'); from orchestration import fit_line; "
        "print(json.dumps([fit_line([1, 2, 3], [3.0, 5.0, 7.0]), fit_line([5, 5], [1.0, 2.0])]))"
    )
    result = _run("-c", code)
    line, single = json.loads(result.stdout)
    assert line["intercept"] == pytest.approx(1.0) and line["slope"] == pytest.approx(2.0)
    assert line["points"] == 3 and line["max_abs_residual"] == pytest.approx(0.0, abs=1e-9)
    assert single is None


@pytest.mark.parametrize("native", [False, True])
def test_bench_measures_bf16_generation_only_where_the_cpu_has_it(monkeypatch, native):
    import eamm.generate
    from benchmarks.run_all import generate_short

    monkeypatch.setattr(eamm.generate, "cpu_has_bf16", lambda: native)
    assert any("bf16" in config for config in generate_short()) is native
    assert "fp32:8" in generate_short()
