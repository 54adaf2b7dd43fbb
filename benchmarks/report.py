"""Render docs/performance.md from benchmarks/results/*.json (whatever of them exists).

Tables: the clip job (ours vs the EAMM recipe vs the floor, with the issue's targets), per-step
time of ours and of the recipe, the floor's pieces, peak RSS against clip length, the flow with
Prefect at 1 and 2 workers, the loader against the train step, generation's peak memory against
the length of the speech, generation's frames per second (``generate.json`` and, from a GPU
host, ``generate_cuda.json``), and ``dvc_status.json`` when present. Numbers are rendered as
measured; the prose in ``NOTES`` says where the time goes.

    python benchmarks/report.py --results benchmarks/results --out docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {"mead_1080p": "MEAD 1080p (M030 sad 3 001)", "lrw_256p": "LRW 256p (ABOUT_00001)"}
# input frames/s per core, from the issue
# issue #17: ours / the EAMM recipe in input frames per CPU second, measured in the same run
TARGETS = {"mead_1080p": 4.0, "lrw_256p": 1.5}
ANCHORS = {"mead_1080p": 22.7, "lrw_256p": 116.0}
RSS_TARGET_MIB = 600
OVERHEAD_TARGET_PCT = 5.0
STEP_ORDER = ("probe", "decode", "fps", "detect", "warp", "encode", "landmarks", "pose", "audio")
STEP_ORDER += ("mfcc", "other")
RECIPE_STEPS = ("read", "detect", "warp", "png", "audio", "mfcc")
FLOOR_CASES = ("decode_ffmpeg", "decode", "decode_warp", "encode", "landmarker", "onepass", "floor")


def load(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def f1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def f0(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def by_fixture(data: dict | None) -> dict[str, dict]:
    return {r["fixture"]: r for r in (data or {}).get("rows", [])}


def meta_line(name: str, data: dict | None) -> str | None:
    if not data:
        return None
    m = data.get("meta", {})
    parts = [m.get("time"), m.get("cpu", m.get("device"))]
    cores = m.get("cores", m.get("cpus"))
    parts.append(f"{cores} cores" if cores else None)
    if m.get("threads") and not isinstance(m["threads"], dict):
        parts.append(f"{m['threads']} torch threads")
    if m.get("loadavg_1_5_15"):
        parts.append(f"load average (1/5/15 min) at the end {m['loadavg_1_5_15']}")
    return f"- `{name}`: " + ", ".join(str(p) for p in parts if p)


def headline(recipe: dict | None, floor: dict | None, ours: dict | None) -> str:
    """Ratios first (same run, so comparable across machines), then the absolute rates."""
    r, f, o = by_fixture(recipe), by_fixture(floor), by_fixture(ours)
    rows = []
    for key, label in FIXTURES.items():
        if key not in o:
            continue
        mine = o[key]["fps_per_core"]
        base = r.get(key, {}).get("fps_per_core")
        low = f.get(key, {}).get("cases", {}).get("floor", {}).get("fps_per_core")
        target = TARGETS[key]
        ratio = mine / base if base else None
        rows.append(
            [
                label,
                f"**{ratio:.2f}x**" if ratio else "-",
                f">= {target:.1f}x: " + ("met" if ratio and ratio >= target else "**missed**"),
                f"{mine / low:.2f}" if low else "-",
                f"{f1(mine)} ({f1(o[key]['fps_wall'])} wall)",
                f"{f1(base)} (anchor {ANCHORS[key]})",
                f1(low),
            ]
        )
    head = ["clip", "ours / recipe", "target", "ours / floor", "ours", "EAMM recipe", "floor"]
    return table(head, rows)


def ours_steps(ours: dict | None) -> str:
    rows = []
    fixtures = [k for k in FIXTURES if k in by_fixture(ours)]
    data = by_fixture(ours)
    for step in STEP_ORDER:
        cells = [step]
        for key in fixtures:
            row = data[key]
            cpu = row["steps"].get(step, {}).get("cpu_s", 0.0)
            cells.append(f"{1000 * cpu / row['frames']:.2f} ms ({100 * cpu / row['cpu_s']:.0f} %)")
        rows.append(cells)
    rows.append(
        ["**total**"] + [f"{1000 * data[k]['cpu_s'] / data[k]['frames']:.2f} ms" for k in fixtures]
    )
    head = ["step (CPU per input frame)"] + [FIXTURES[k] for k in fixtures]
    return table(head, rows)


def recipe_steps(recipe: dict | None) -> str:
    found = by_fixture(recipe)
    data = {k: found[k] for k in FIXTURES if k in found}
    rows = []
    for step in RECIPE_STEPS:
        cells = [step]
        for row in data.values():
            cpu = row["steps"].get(step, {}).get("cpu_s", 0.0)
            cells.append(f"{1000 * cpu / row['frames']:.2f} ms ({100 * cpu / row['cpu_s']:.0f} %)")
        rows.append(cells)
    return table(["step (CPU per input frame)"] + [FIXTURES[k] for k in data], rows)


def floor_table(floor: dict | None) -> str:
    found = by_fixture(floor)
    data = {k: found[k] for k in FIXTURES if k in found} | found
    rows = []
    for case in FLOOR_CASES:
        cells = [case]
        for row in data.values():
            c = row["cases"].get(case)
            per = c.get("ms_per_frame_cpu") if c else None
            cells.append(
                "-"
                if not c
                else f"{f0(c['fps_per_core'])} fps/core"
                + (f" ({per:.2f} ms/frame)" if per is not None else "")
            )
        rows.append(cells)
    extra = sorted({name for row in data.values() for name in row.get("alternatives", {})})
    for name in extra:
        cells = [f"{name} (not in floor)"]
        for row in data.values():
            c = row.get("alternatives", {}).get(name)
            cells.append(
                "-"
                if not c
                else f"{f0(c['fps_per_core'])} fps/core ({c['ms_per_frame_cpu']:.2f} ms/frame)"
            )
        rows.append(cells)
    head = ["piece"] + [FIXTURES.get(k, k) for k in data]
    return table(head, rows)


COMPARE_STEPS = ("detect", "encode", "landmarks")


def dotted(params: dict, prefix: str = "") -> dict[str, object]:
    """Nested params as ``section.key`` -> value."""
    flat: dict[str, object] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat |= dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def compare_table(ours: dict | None) -> str | None:
    """Defaults against the ``--compare`` params, per fixture, from the same run."""
    changed = {r["fixture"]: r for r in (ours or {}).get("compare_rows", [])}
    base = by_fixture(ours)
    rows = []
    for key, label in FIXTURES.items():
        if key not in changed or key not in base:
            continue
        for row in (changed[key], base[key]):
            settings = ", ".join(f"{k}={v}" for k, v in dotted(row.get("params", {})).items())
            steps = [
                f"{1000 * row['steps'].get(s, {}).get('cpu_s', 0.0) / row['frames']:.2f}"
                for s in COMPARE_STEPS
            ]
            rows.append(
                [
                    label,
                    settings or "defaults",
                    f"**{f1(row['fps_per_core'])}** ({f1(row['fps_wall'])} wall)",
                    *steps,
                    f"{1000 * row['cpu_s'] / row['frames']:.2f}",
                ]
            )
    if not rows:
        return None
    head = ["clip", "params", "fps/core"]
    head += [f"{s} ms/frame" for s in COMPARE_STEPS] + ["total ms/frame"]
    return table(head, rows)


def rss_table(recipe: dict | None, ours: dict | None) -> str:
    rows = []
    for who, data in (("EAMM recipe", recipe), ("ours", ours)):
        for row in (data or {}).get("rows", []):
            seconds = row.get("duration_s") or row["frames"] / 30
            if row["fixture"].startswith("lrw"):
                seconds = row["frames"] / 25
            elif row["fixture"].startswith("mead"):
                seconds = row["frames"] / 30
            verdict = "-"
            if who == "ours":
                verdict = "met" if row["peak_rss_mib"] < RSS_TARGET_MIB else "**missed**"
            rows.append(
                [
                    who,
                    row["fixture"],
                    str(row["frames"]),
                    f"{seconds:.1f}",
                    f0(row["peak_rss_mib"]),
                    f1(row["fps_per_core"]),
                    verdict,
                ]
            )
    head = ["pipeline", "clip", "input frames", "seconds", "peak RSS MiB", "fps/core"]
    return table([*head, f"< {RSS_TARGET_MIB} MiB"], rows)


def flow_table(flow: dict | None) -> str:
    rows = []
    for r in (flow or {}).get("rows", []):
        verdict = "-"
        if r["dataset"] == "lrw":
            verdict = "met" if r["overhead_pct"] < OVERHEAD_TARGET_PCT else "**missed**"
        rows.append(
            [
                r["dataset"],
                str(r["clips"]),
                str(r["workers"]),
                f1(r["index_wall_s"]),
                f1(r["flow_wall_s"]),
                f1(r["clip_work_s"]),
                f"{r['overhead_s']:.1f} s = {r['overhead_pct']:.1f} %",
                verdict,
                f"{r['clips_per_s']:.2f}",
                f1(r["fps_wall"]),
                f1(r.get("fps_per_core_cpu")),
                f0(r["peak_rss_mib"]),
            ]
        )
    head = ["dataset", "clips", "workers", "index s (server start)", "flow wall s"]
    head += ["sum of clip work s", "overhead", f"< {OVERHEAD_TARGET_PCT:.0f} % (LRW)", "clips/s"]
    head += ["input fps (wall)", "input fps / CPU s", "peak RSS MiB (process)"]
    return table(head, rows)


def overhead_fit_table(flow: dict | None) -> str:
    """Fixed vs per-clip overhead (``preprocess_flow.py --scale``): the per-clip share is what a
    full dataset pays."""
    rows = [
        [
            r["dataset"],
            str(r["workers"]),
            " and ".join(str(n) for n in r["clips"]),
            f1(r["fixed_overhead_s"]),
            f1(r["per_clip_wall_ms"]),
            f1(r["per_clip_overhead_ms"]),
            f"{r['overhead_at_scale_pct']:.1f} %",
            ("met" if r["overhead_at_scale_pct"] < OVERHEAD_TARGET_PCT else "**missed**")
            if r["dataset"] == "lrw"
            else "-",
        ]
        for r in (flow or {}).get("fits", [])
    ]
    if not rows:
        return ""
    head = ["dataset", "workers", "trees (clips)", "fixed overhead s", "wall ms per clip"]
    head += ["overhead ms per clip", "overhead at scale", f"< {OVERHEAD_TARGET_PCT:.0f} % (LRW)"]
    return table(head, rows)


def loader_table(loaders: list[tuple[str, dict]], steps: dict | None) -> str:
    step_rows = {r["stage"]: r for r in (steps or {}).get("rows", [])}
    rows = []
    for _, data in loaders:
        for r in data.get("rows", []):
            step = step_rows.get(r["stage"])
            step_rate = None
            if step and step.get("ms_per_step"):
                step_rate = step["batch"] / step["ms_per_step"] * 1000
            rows.append(
                [
                    r["stage"],
                    ",".join(r["datasets"]),
                    str(r["image_size"]),
                    str(r["batch"]),
                    str(r["workers"]),
                    f1(r["samples_per_s"]),
                    f"{f1(step_rate)} (CPU, {step['profile']}, batch {step['batch']})"
                    if step_rate
                    else "-",
                    "GPU not measured",
                ]
            )
    head = ["stage", "dataset", "size", "batch", "loader workers", "loader samples/s"]
    head += ["train step samples/s", "GPU"]
    return table(head, rows)


def dvc_section(data: dict) -> str:
    """``benchmarks/dvc_status.py``'s JSON, rendered generically (rows of dicts or key/values)."""
    rows = data.get("rows")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return table(keys, [[_cell(r.get(k)) for k in keys] for r in rows])
    flat = {k: v for k, v in data.items() if k != "meta"}
    return table(["measure", "value"], [[k, _cell(v)] for k, v in flat.items()])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value)[:120] + "`"
    return str(value)


def generate_memory_section(data: dict) -> list[str]:
    """Peak RSS per speech length and how far apart the peaks are (goal: within 10 %)."""
    rows = [
        [
            r["profile"],
            f"{r['audio_s']:g}",
            str(r["frames"]),
            f0(r["rss_before_mib"]),
            f0(r["peak_rss_mib"]),
            f0(r.get("cuda_peak_mib")),
            f0(r["wall_s"]),
        ]
        for r in data["rows"]
    ]
    head = ["profile", "speech s", "frames", "RSS before MiB", "peak RSS MiB", "CUDA peak MiB"]
    lines = [table([*head, "wall s"], rows), ""]
    if data.get("peak_rss_spread") is not None:
        lines += [
            f"Peaks within {100 * data['peak_rss_spread']:.1f} % of each other (goal 10 %).",
            "",
        ]
    return lines


SPEED_GROUP = ("device", "profile", "audio_s", "emotion")


def _baseline(rows: list[dict], row: dict) -> dict | None:
    """fp32 at the smallest batch measured for the same device, profile and speech."""
    same = [
        r
        for r in rows
        if r.get("variant") == "fp32"
        and "error" not in r
        and all(r.get(k) == row.get(k) for k in SPEED_GROUP)
    ]
    return min(same, key=lambda r: r["batch"]) if same else None


def generate_speed_section(data: dict) -> list[str]:
    """``benchmarks/generate.py``: one row per device/variant/batch/length, fastest first within a
    device and length; failed configurations last, with their error."""
    rows = data.get("rows", [])
    ok = [r for r in rows if "error" not in r]
    ok.sort(key=lambda r: (r["device"], r["profile"], r["audio_s"], -r["x_realtime"]))
    lines_out = []
    for r in ok:
        base = _baseline(rows, r)
        lines_out.append(
            [
                f"**{r['x_realtime']:.3f}x**",
                f"{r['fps']:.2f}",
                f0(r["peak_rss_mib"]),
                r["device"],
                r["variant"],
                str(r["batch"]),
                f"{r['audio_s']:g}",
                str(r["frames"]),
                f"{r['fps'] / base['fps']:.2f}x (batch {base['batch']})" if base else "-",
                f0(r["render_ms_per_frame"]),
                f0(r["keypoints_ms_per_frame"]),
                f0(1000 * r["other_s"] / r["frames"]),
                f1(r.get("render_first_s")),
                f0(r.get("cuda_peak_mib")),
                f1(r.get("psnr_vs_fp32_db")),
            ]
        )
    for r in rows:
        if "error" in r:
            cells = ["failed", "-", "-", r.get("device", "-"), r["variant"], str(r["batch"])]
            cells += [f"{r['audio_s']:g}", "-", "-", "-", "-", "-", "-", "-", r["error"][:80]]
            lines_out.append(cells)
    head = ["x real time", "fps", "peak RSS MiB", "device", "variant", "batch", "speech s"]
    head += ["frames", "fps vs fp32", "renderer ms/frame", "keypoint nets ms/frame"]
    head += ["outside generator ms/frame", "first render s", "CUDA peak MiB", "PSNR vs fp32 dB"]
    out = [table(head, lines_out), ""]
    for device, seconds in dict.fromkeys((r["device"], r["audio_s"]) for r in ok):
        group = [r for r in ok if (r["device"], r["audio_s"]) == (device, seconds)]
        best = max(group, key=lambda r: r["x_realtime"])
        base = _baseline(rows, best)
        versus = f", {best['fps'] / base['fps']:.2f}x fp32 at batch {base['batch']}" if base else ""
        out += [
            f"Fastest on {device} ({best['device_name']}, {best['torch_threads']} torch threads) "
            f"for {seconds:g} s of speech: {best['variant']} at batch {best['batch']}, "
            f"{best['x_realtime']:.3f}x real time ({best['fps']:.2f} fps{versus}).",
            "",
        ]
    return out


def orchestration_section(data: dict) -> list[str]:
    """``benchmarks/orchestration.py``: the flow at N clips with a stand-in clip worker."""
    head = ["clips", "flow wall s", "ms/clip", "flow CPU s", "flow peak RSS MiB"]
    head += ["server peak RSS MiB", "Prefect DB MiB", "manifest MiB", "no-op re-run s"]
    head += ["fresh re-run peak RSS MiB"]
    rows = [
        [
            str(r["clips"]),
            f1(r["flow_wall_s"]),
            f"{r['ms_per_clip']:.2f}",
            f1(r["flow_cpu_s"]),
            f0(r["flow_peak_rss_mib"]),
            f0(r.get("server_peak_rss_mib")),
            f1(r.get("prefect_db_mib")),
            f"{r['manifest_mib']:.2f}",
            f1(r["rerun_wall_s"]),
            f0(r.get("rerun_peak_rss_mib")),
        ]
        for r in sorted(data["rows"], key=lambda r: r["clips"])
    ]
    out = [table(head, rows), ""]
    fits = {k: v for k, v in (data.get("fits") or {}).items() if v}
    for key, fit in fits.items():
        out.append(
            f"- fit `{key}` = {fit['intercept']:.4g} + {fit['slope'] * 1000:.4g} per 1000 clips"
        )
    measured = any(r["clips"] >= 500_000 for r in data["rows"])
    if {"flow_wall_s", "flow_peak_rss_mib"} <= set(fits) and not measured:
        at = {k: fits[k]["intercept"] + fits[k]["slope"] * 500_000 for k in fits}
        out.append(
            f"- at 500,000 clips the fits give (extrapolated, not measured): flow wall "
            f"{at['flow_wall_s'] / 60:.0f} min, flow peak RSS {at['flow_peak_rss_mib'] / 1024:.1f}"
            f" GiB"
            + (f", Prefect DB {at['prefect_db_mib']:.0f} MiB" if "prefect_db_mib" in at else "")
        )
    return [*out, ""] if fits else out


def orchestration_change(now: dict, before: dict) -> list[str]:
    """The same N measured with an earlier flow (``orchestration_before.json``): ratios."""
    earlier = {r["clips"]: r for r in before["rows"]}
    head = ["clips", "flow peak RSS MiB (now / before)", "flow wall s (now / before)"]
    head += ["no-op re-run s (now / before)"]
    rows = []
    for r in sorted(now["rows"], key=lambda r: r["clips"]):
        if (b := earlier.get(r["clips"])) is None:
            continue
        rows.append(
            [
                str(r["clips"]),
                f"{f0(r['flow_peak_rss_mib'])} / {f0(b['flow_peak_rss_mib'])}",
                f"{f1(r['flow_wall_s'])} / {f1(b['flow_wall_s'])}",
                f"{f1(r['rerun_wall_s'])} / {f1(b['rerun_wall_s'])}",
            ]
        )
    if not rows:
        return []
    code = before.get("meta", {}).get("code", "an earlier commit")
    return [f"Against the flow before ({code}), same benchmark:", "", table(head, rows), ""]


def where_time_goes(ours: dict | None, recipe: dict | None) -> list[str]:
    """The largest CPU terms per clip, computed from the step tables."""
    lines = []
    for key, row in by_fixture(ours).items():
        if key not in FIXTURES:
            continue
        ranked = sorted(row["steps"].items(), key=lambda kv: -kv[1]["cpu_s"])[:4]
        terms = ", ".join(f"{n} {100 * s['cpu_s'] / row['cpu_s']:.0f} %" for n, s in ranked)
        lines.append(f"- ours, {FIXTURES[key]}: {terms}.")
    for key, row in by_fixture(recipe).items():
        if key not in FIXTURES:
            continue
        ranked = sorted(row["steps"].items(), key=lambda kv: -kv[1]["cpu_s"])[:3]
        terms = ", ".join(f"{n} {100 * s['cpu_s'] / row['cpu_s']:.0f} %" for n, s in ranked)
        lines.append(f"- EAMM recipe, {FIXTURES[key]}: {terms}.")
    return lines


def render(results: Path, notes: str = "") -> str:
    recipe = load(results, "preprocess_recipe")
    floor = load(results, "preprocess_floor")
    ours = load(results, "preprocess_ours")
    flow = load(results, "preprocess_flow")
    steps = load(results, "train_step_cpu")
    dvc = load(results, "dvc_status")
    orchestration = load(results, "orchestration")
    generation = load(results, "generate_memory")
    speeds = [
        (name, data) for name in ("generate", "generate_cuda") if (data := load(results, name))
    ]
    loaders = [(p.stem, json.loads(p.read_text())) for p in sorted(results.glob("loader_*.json"))]
    out = [
        "# Performance",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results/*.json` (`make bench`).",
        "Single-threaded settings (OMP/BLAS 1 thread, `cv2.setNumThreads(1)`, one decoder",
        "thread, `ffmpeg -threads 1`, x264 `threads=1`), medians over repeated runs, every",
        "clip in a fresh process. **fps/core** = input frames / CPU seconds (process + any",
        "ffmpeg children), which stays meaningful on a shared machine; wall-clock rates are",
        "given beside it. Input frames = decoded frames of the raw clip (MEAD: 30 fps, so",
        "112 input frames become 93 output frames at 25 fps).",
        "",
    ]
    if notes:
        out += [notes.strip(), ""]
    out += ["## Machine and load", ""]
    named = [
        ("preprocess_recipe", recipe),
        ("preprocess_floor", floor),
        ("preprocess_ours", ours),
        ("preprocess_flow", flow),
        ("train_step_cpu", steps),
        ("dvc_status", dvc),
        ("generate_memory", generation),
        *speeds,
    ]
    out += [line for name, data in named if (line := meta_line(name, data))]
    out += [""]
    if ours:
        out += ["## Clip job: ours vs the EAMM recipe vs the floor (input frames/s per core)", ""]
        out += [headline(recipe, floor, ours), ""]
        out += [
            "The EAMM recipe does less (no fps normalisation, no per-frame landmarks, no pose,",
            "no video encode); ours writes all five outputs. The floor is decode -> 25 fps ->",
            "warp -> H.264 in one pass plus the face mesh per crop (see below).",
            "",
            "### Where the time goes",
            "",
            *where_time_goes(ours, recipe),
            "",
            "### Ours per step",
            "",
            ours_steps(ours),
            "",
        ]
        if compare := compare_table(ours):
            out += [
                "### Ours with changed params, in the same run",
                "",
                "`preprocess_ours.py --compare`: each clip also measured with these",
                "`PreprocessParams`, alternating with the default runs (CPU per input frame).",
                "",
                compare,
                "",
            ]
    if recipe:
        out += ["### EAMM recipe per step", "", recipe_steps(recipe), ""]
    if floor:
        out += ["### The floor, piece by piece", "", floor_table(floor), ""]
    if recipe or ours:
        out += ["## Peak RSS per worker against clip length", "", rss_table(recipe, ours), ""]
        out += [
            "Long clips are the MEAD fixture concatenated with itself (ffmpeg concat, stream",
            "copy) in a temporary folder. Ours streams frames (decode -> warp -> encoder),",
            "so its peak stays flat; the recipe holds every decoded frame in a list.",
            "",
        ]
    if flow:
        out += ["## The flow with Prefect (threads runner, params.yaml batch sizes)", ""]
        out += [flow_table(flow), ""]
        out += [
            "Overhead = preprocess-flow wall - (sum of per-clip `processing_seconds`) /",
            "workers. It includes loading the face models once per worker, Prefect's task",
            "and flow run bookkeeping, journaling, packing the shards and the manifest write.",
            "The index flow column includes starting Prefect's temporary API server (first",
            "flow of a process).",
            "",
        ]
        fits = overhead_fit_table(flow)
        if fits:
            out += [
                "Split into a fixed part and a part per clip (a line through the two tree",
                "sizes): a full dataset pays only the per-clip part.",
                "",
                fits,
                "",
            ]
    if loaders or steps:
        out += ["## Training: loader samples/s alone vs the train step", ""]
        out += [loader_table(loaders, steps), ""]
        out += [
            "No GPU on this machine: the train step is the CPU rate at the `tiny` profile",
            "(one thread); the GPU step rate is not measured here",
            "(`python benchmarks/train_step.py --profile reference` on a GPU host).",
            "",
        ]
    if generation:
        out += ["## Generation: peak RSS against the length of the speech", ""]
        out += generate_memory_section(generation)
        out += [
            "`benchmarks/generate_memory.py`: one `eamm.generate.generate` per length in a fresh",
            "process, random-weight networks of the profile, the sample portrait, speech-like",
            "audio and the sample LRW clip as the emotion video (all three videos written).",
            "Frames stream through the networks and encoders 64 at a time, so the peak does not",
            "grow with the frames; what still grows is the 16 kHz speech held whole (3.7 MiB a",
            "minute, ~3x that while it loads) and allocator fragmentation over many windows.",
            "Before streaming (issue #15) the 64-px demo peaked at 1.1 GB for 6 s and 3.3 GB",
            "for 60 s. The reference-size row is for a GPU host",
            "(`--profile reference --seconds 10 600`). The emotion and pose videos are read",
            "only as far as the speech (their aligned frames are held, the speech's length at",
            "most): a 61.5 s emotion video with 2 s of speech peaked at 1173 MiB, 1728 with",
            "it as the pose video too; now 619 and 619 (2026-12-05, AMD EPYC, demo models).",
            "",
        ]
    if speeds:
        out += ["## Generation: frames per second", ""]
        for _, data in speeds:
            out += generate_speed_section(data)
        out += [
            "`benchmarks/generate.py`: one `eamm.generate.generate` per row in a fresh process,",
            "the inputs and random-weight networks of the memory benchmark above (emotion video",
            "given: the emotion, neutral and comparison videos are written, each output frame is",
            "rendered twice). x real time = fps / 25. The variants are `GenerateParams` fields:",
            "`precision: bf16` (the generator under `torch.autocast`), `channels_last` (NHWC",
            "generator), `torch_compile`; fp32 is today's default. Network only (after the run",
            "and a warm-up batch, one batch at the row's size): the renderer is the generator on",
            "one batch of keypoints, the keypoint nets the audio network, its head and the",
            "emotion network; outside generator = the run's wall time less every generator call",
            "(face alignment of the photo and the emotion video, augmentation, keypoint nets,",
            "the pipe to the three ffmpeg encoders), per output frame. First render = the first",
            "generator call of the run, compile included. PSNR vs fp32: the renderer's frames",
            "against fp32 eager on the same batch (random weights: a numerical check only).",
            "bf16 is fast on a CPU with AVX512-BF16/AMX (oneDNN); without them it may be slower.",
            "A compiled generator pays its compile once per process (first render), so it pays",
            "off only on longer speech. The defaults stay fp32, NCHW, eager (outputs unchanged).",
            "The GPU rows (the issue's goal: >= 10x real time at 256x256 on one H100/H200) come",
            "from the command in the script's docstring (`--device cuda`, `generate_cuda.json`).",
            "",
        ]
    if orchestration:
        out += ["## Orchestration at scale (benchmarks/orchestration.py)", ""]
        out += orchestration_section(orchestration)
        if before := load(results, "orchestration_before"):
            out += orchestration_change(orchestration, before)
        out += [
            "The preprocessing flow on an LRW tree of N clips (500 words), everything real",
            "(index, reuse check, thread runner with a temporary Prefect server, journal,",
            "packing, manifest and run log) except the clip job, replaced by a stand-in that",
            "writes five tiny members. ms/clip is what orchestration adds to every clip (wall,",
            "2 workers); the real LRW clip job costs about 240 CPU-ms. Each N runs in a fresh",
            "process with a fresh Prefect home; the DB size is read after the server settles.",
            "",
        ]
    if dvc:
        out += ["## DVC: `dvc status` / no-op `dvc repro` (benchmarks/dvc_status.py)", ""]
        out += [dvc_section(dvc), ""]
    rows = (ours or {}).get("rows", [])
    profiles = [(r["fixture"], r["profile"]) for r in rows if "profile" in r]
    if profiles:
        out += ["## Profiles (pyinstrument, one run of ours per clip)", ""]
        for name, text in profiles:
            out += [f"<details><summary>{name}</summary>", "", "```", text.strip(), "```", ""]
            out += ["</details>", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument(
        "--notes",
        help="a Markdown file whose text goes under the title (default: benchmarks/notes.md "
        "where it exists; '' for none)",
    )
    args = parser.parse_args(argv)
    default_notes = ROOT / "benchmarks" / "notes.md"
    if args.notes is None and default_notes.is_file():
        args.notes = str(default_notes)
    notes = Path(args.notes).read_text() if args.notes else ""
    text = render(Path(args.results), notes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
