"""``make bench``: every benchmark in one go, then docs/performance.md from the results.

Runs, in order, each as its own process (so one slow or failing piece is visible on its own):
the EAMM recipe, the floor, ours (with a 10x MEAD clip and a profile), the flow over trees of
copies (and 4x larger ones, for the overhead per clip) at 1 and 2 workers, the training loader
on the flow's processed trees (stage 1 on LRW, stage 3 on MEAD), the CPU train step,
generation's speed on the CPU (reference size, 2 s of speech, fp32 and the fastest variant;
``--generate-all`` for every CPU configuration of docs/performance.md, ~15 minutes more) and the
report. ``--quick`` shrinks every piece to a smoke run (a few frames, one repeat) for checking
the wiring, not for numbers.

    python benchmarks/run_all.py                 # about 26 minutes on 2 cores
    python benchmarks/run_all.py --quick --results /tmp/bench
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PIECES = ("recipe", "floor", "ours", "flow", "loader", "train_step", "generate", "report")
# benchmarks/generate.py's CPU configurations (VARIANT:BATCH): the short set, and --generate-all
GENERATE_SHORT = ["fp32:8", "bf16+channels_last:8"]
# Without bf16 in hardware (AVX512-BF16 or AMX) bf16 is emulated: on an AVX2 EPYC it ran over
# 11 minutes for what fp32 did in 4 (2026-12-05), so the short set measures channels_last there.
GENERATE_SHORT_NO_BF16 = ["fp32:8", "channels_last:8"]
GENERATE_ALL = ["fp32:8", "bf16:8", "channels_last:8", "bf16+channels_last:8", "fp32:16"]
GENERATE_ALL += ["compile:8", "bf16+channels_last+compile:8", "bf16+channels_last:16"]


def generate_short() -> list[str]:
    """The short set for this CPU (``eamm.generate.cpu_has_bf16``, the check `eamm generate`
    warns by)."""
    from eamm.generate import cpu_has_bf16

    return GENERATE_SHORT if cpu_has_bf16() else GENERATE_SHORT_NO_BF16


def run(args: list[str]) -> bool:
    print("+ " + " ".join(args), file=sys.stderr, flush=True)
    start = time.perf_counter()
    ok = subprocess.run([sys.executable, *args], cwd=ROOT).returncode == 0
    print(f"  ({time.perf_counter() - start:.0f} s, {'ok' if ok else 'FAILED'})", file=sys.stderr)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(HERE / "results"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-sized runs")
    parser.add_argument("--only", nargs="+", choices=PIECES, default=list(PIECES))
    parser.add_argument(
        "--generate-all", action="store_true", help="every CPU generation configuration"
    )
    args = parser.parse_args(argv)
    res = Path(args.results)
    res.mkdir(parents=True, exist_ok=True)
    repeats = ["--repeats", "1" if args.quick else str(args.repeats)]
    tiny = ["--frames", "8", "--warmup", "0"] if args.quick else []
    long = ["--long", "2" if args.quick else "10"]
    copies = ["--copies", "1", "2"] if args.quick else ["--copies", "64", "8"]
    copies += ["--scale", "2" if args.quick else "4"]
    failed = []
    with tempfile.TemporaryDirectory(prefix="eamm-bench-trees-") as trees:
        plan = {
            "recipe": ["benchmarks/preprocess_recipe.py", *repeats, *tiny, *long],
            "floor": ["benchmarks/preprocess_floor.py", *repeats, *tiny],
            "ours": [
                "benchmarks/preprocess_ours.py",
                *repeats,
                *tiny,
                *long,
                "--profile",
                "--compare",
                "landmarks.mesh_engine=graph",
            ],
            "flow": [
                "benchmarks/preprocess_flow.py",
                *copies,
                "--workers",
                "1",
                "2",
                "--keep",
                trees,
                *(["--frames", "8"] if args.quick else []),
            ],
        }
        names = {"recipe": "preprocess_recipe", "floor": "preprocess_floor"}
        names |= {"ours": "preprocess_ours", "flow": "preprocess_flow"}
        for piece, cmd in plan.items():
            if piece in args.only and not run([*cmd, "--json", str(res / f"{names[piece]}.json")]):
                failed.append(piece)
        if "loader" in args.only:
            batches = "2" if args.quick else "20"
            for dataset, stage in (("lrw", "train_a2fd"), ("mead", "train_emotion")):
                if not (Path(trees) / dataset / "processed" / "manifest.parquet").is_file():
                    print(f"  loader {stage}: no {dataset} tree (run the flow piece)")
                    continue
                cmd = ["benchmarks/loader.py", "--data", trees, "--dataset", dataset]
                cmd += ["--stage", stage, "--workers", "0", "--batches", batches]
                cmd += ["--clip-len", "4"] if args.quick else []
                if not run([*cmd, "--json", str(res / f"loader_{stage}.json")]):
                    failed.append(f"loader {stage}")
    if "train_step" in args.only:
        steps = ["--steps", "2", "--warmup", "0"]
        if not args.quick:
            steps = ["--steps", "5", "--warmup", "1"]
        cmd = ["benchmarks/train_step.py", "--profile", "tiny", "--device", "cpu"]
        cmd += ["--threads", "1", "--stages", "train_a2fd", "train_emotion", *steps]
        if not run([*cmd, "--json", str(res / "train_step_cpu.json")]):
            failed.append("train_step")
    if "generate" in args.only:
        cmd = ["benchmarks/generate.py", "--device", "cpu", "--threads", "1"]
        if args.quick:
            cmd += ["--profile", "tiny", "--seconds", "1", "--configs", "fp32:8", "bf16:8"]
        else:
            configs = GENERATE_ALL if args.generate_all else generate_short()
            cmd += ["--profile", "reference", "--seconds", "2", "--configs", *configs]
        if not run([*cmd, "--json", str(res / "generate.json")]):
            failed.append("generate")
    if "report" in args.only:
        notes = HERE / "notes.md"
        cmd = ["benchmarks/report.py", "--results", str(res), "--out", args.doc]
        run([*cmd, *(["--notes", str(notes)] if notes.is_file() else [])])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
