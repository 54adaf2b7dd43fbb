"""The whole flow over a tree of N copies of a fixture clip, at 1 and 2 workers, Prefect included.

Trees (temporary, not committed): MEAD layout with the 1080p fixture
(``<speaker>/video/front/sad/level_3/<utt>.mp4`` + ``<speaker>/audio/.../<utt>.m4a``, speakers
M030 (test) and M005 (train)) and LRW layout with the 256p fixture
(``lipread_mp4/ABOUT/train/ABOUT_<n>.mp4``). Each (dataset, workers) run is a fresh process doing
what ``eamm index`` + ``eamm preprocess --workers W`` do (flows.index.index_flow, then
flows.preprocess.run_preprocess with the params.yaml runner) into an empty output folder.

Orchestration overhead = preprocess-flow wall time minus the per-clip work (the manifest's
``processing_seconds``, summed, divided by the worker count), as % of the flow's wall time. The
index flow (which also starts Prefect's temporary API server on first use) is timed apart.
Peak RSS is the process's: with the default threads runner the workers share one process.

Most of that overhead is paid once per run (the flow call, loading the face models in each
worker, writing the manifest), so its share falls as the tree grows. ``--scale`` also runs each
dataset on a tree ``scale`` times larger and splits the overhead into a fixed part and a part
per clip (a straight line through the two sizes): the per-clip part, as a share of the per-clip
wall time, is the overhead at dataset scale (LRW's 539k clips).

    python benchmarks/preprocess_flow.py --copies 32 8 --workers 1 2 --json out.json
    python benchmarks/preprocess_flow.py --datasets lrw --copies 32 --scale 4
    python benchmarks/preprocess_flow.py --datasets lrw --copies 1 --workers 1
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/cv2 load

MEAD_SPEAKERS = ("M030", "M005")


def build_tree(dataset: str, copies: int, raw: Path, frames: int | None, work: Path) -> None:
    """``copies`` copies of the dataset's fixture clip in its raw layout under ``raw``."""
    fixture = common.FIXTURE_CLIPS["mead_1080p" if dataset == "mead" else "lrw_256p"]
    if frames:
        fixture = common.trimmed(fixture, frames, work)
    for i in range(copies):
        if dataset == "mead":
            speaker, utt = MEAD_SPEAKERS[i % 2], f"{i + 1:03d}"
            video = raw / speaker / "video/front/sad/level_3" / f"{utt}.mp4"
            video.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fixture.video, video)
            if fixture.audio:
                audio = raw / speaker / "audio/sad/level_3" / f"{utt}.m4a"
                audio.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(fixture.audio, audio)
        else:
            video = raw / "lipread_mp4/ABOUT/train" / f"ABOUT_{i + 1:05d}.mp4"
            video.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fixture.video, video)


def run_flow(dataset: str, raw: str, out: str, workers: int, params_path: str) -> dict:
    """Runs in a fresh process: index flow, then the preprocess flow, timed apart."""
    started = time.perf_counter()
    common.pin_threads()
    import pyarrow.parquet as pq

    from eamm.manifest import MANIFEST_NAME, RUN_LOG_NAME, read_run_log
    from flows.index import index_flow
    from flows.preprocess import run_preprocess

    imported = time.perf_counter()
    index_path = str(Path(out) / "index.parquet")
    with common.timed() as index:
        index_flow(dataset, index_path, raw=raw, params_path=params_path)
    with common.timed() as flow:
        summary = run_preprocess(
            dataset, out, raw=raw, index_path=index_path, params_path=params_path, workers=workers
        )
    rows = pq.read_table(Path(out) / MANIFEST_NAME).to_pylist()
    measured = read_run_log(Path(out) / RUN_LOG_NAME)
    work = sum(m["processing_seconds"] or 0.0 for m in measured.values())
    frames_in = sum(r["n_frames_in"] or 0 for r in rows)
    overhead = flow.wall_s - work / workers
    return {
        "dataset": dataset,
        "workers": workers,
        "clips": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "input_frames": frames_in,
        "output_frames": sum(r["n_frames"] or 0 for r in rows),
        "import_s": imported - started,
        "index_wall_s": index.wall_s,
        "flow_wall_s": flow.wall_s,
        "flow_cpu_s": flow.cpu_s,
        "clip_work_s": work,
        "overhead_s": overhead,
        "overhead_pct": 100 * overhead / flow.wall_s,
        "clips_per_s": len(rows) / flow.wall_s,
        "fps_wall": frames_in / flow.wall_s,
        "fps_per_core_cpu": frames_in / flow.cpu_s if flow.cpu_s > 0 else None,
        "fps_per_worker": frames_in / flow.wall_s / workers,
        "peak_rss_mib": common.peak_rss_mib(),
        "flow_summary_seconds": summary["seconds"],
    }


def overhead_fits(rows: list[dict]) -> list[dict]:
    """Fixed and per-clip overhead per (dataset, workers) from the smallest and largest tree."""
    fits = []
    for key in sorted({(r["dataset"], r["workers"]) for r in rows}):
        runs = sorted(
            (r for r in rows if (r["dataset"], r["workers"]) == key), key=lambda r: r["clips"]
        )
        small, large = runs[0], runs[-1]
        added = large["clips"] - small["clips"]
        if added <= 0:
            continue
        per_clip_wall = (large["flow_wall_s"] - small["flow_wall_s"]) / added
        per_clip_overhead = (large["overhead_s"] - small["overhead_s"]) / added
        fits.append(
            {
                "dataset": key[0],
                "workers": key[1],
                "clips": [small["clips"], large["clips"]],
                "fixed_overhead_s": small["overhead_s"] - per_clip_overhead * small["clips"],
                "per_clip_wall_ms": 1000 * per_clip_wall,
                "per_clip_overhead_ms": 1000 * per_clip_overhead,
                "overhead_at_scale_pct": 100 * per_clip_overhead / per_clip_wall,
            }
        )
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(__doc__, repeats=1)
    parser.add_argument("--datasets", nargs="+", choices=("lrw", "mead"), default=["lrw", "mead"])
    parser.add_argument(
        "--copies", nargs="+", type=int, default=[32, 8], help="clips per tree (per dataset)"
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="also run trees this many times larger and fit fixed + per-clip overhead (>= 2)",
    )
    parser.add_argument("--frames", type=int, help="trim the fixture to N frames (smoke runs)")
    parser.add_argument("--params", default=str(common.ROOT / "params.yaml"))
    parser.add_argument(
        "--keep", metavar="DIR", help="build trees and outputs under DIR and keep them (loader)"
    )
    args = parser.parse_args(argv)
    common.require_fixtures(parser)
    padded = args.copies + args.copies[-1:] * len(args.datasets)
    copies = dict(zip(args.datasets, padded[: len(args.datasets)], strict=True))
    sizes = {d: [n] + ([n * args.scale] if args.scale > 1 else []) for d, n in copies.items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="eamm-flow-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        for dataset in args.datasets:
            for size in sizes[dataset]:
                raw = work / "raw" / dataset
                shutil.rmtree(raw, ignore_errors=True)
                build_tree(dataset, size, raw, args.frames, Path(tmp))
                for workers in args.workers:
                    for rep in range(args.repeats):
                        out = work / dataset / "processed"
                        shutil.rmtree(out, ignore_errors=True)
                        common.log(f"flow {dataset} x{size} workers {workers} ...")
                        row = common.run_isolated(
                            run_flow, dataset, str(raw), str(out), workers, args.params
                        )
                        row["repeat"] = rep
                        rows.append(row)
                        common.log(
                            f"  {row['flow_wall_s']:.1f} s wall, {row['fps_wall']:.1f} fps, "
                            f"overhead {row['overhead_pct']:.1f} %, "
                            f"peak RSS {row['peak_rss_mib']:.0f} MiB"
                        )
    common.write_json(
        args.json, {"meta": common.machine_meta(), "rows": rows, "fits": overhead_fits(rows)}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
