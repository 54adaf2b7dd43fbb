"""Samples/s of a training stage's data loader alone (decoding, augmentation, collation).

The stage's own dataset (built by its factory in ``eamm.stages``, through
``eamm.train.build.build_for_timing``) over the ok clips of a processed manifest, fed through a
``DataLoader`` with ``StepBatchSampler`` as the training loop does, for each ``--workers``
count. Two passes over the same ``--batches`` batches
with persistent workers (as in the loop): reported are the time to the first batch (includes
worker start-up), samples/s of the second pass (steady) and of the first (cold, with start-up).

    python benchmarks/loader.py --data data --dataset lrw --stage train_a2fd --workers 0 2
    python benchmarks/loader.py --dataset mead --stage train_emotion --image-size 256 --json l.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from eamm.clips import load_clips  # noqa: E402
from eamm.config import StageParams, TrainerParams  # noqa: E402
from eamm.errors import EammError  # noqa: E402
from eamm.stages import STAGES_BY_NAME  # noqa: E402
from eamm.train.build import build_for_timing, manifest_paths  # noqa: E402
from eamm.train.datasets import StepBatchSampler  # noqa: E402


def measure(dataset, batch: int, batches: int, workers: int, seed: int, pin: bool) -> dict:
    """Two passes over the same ``batches`` batches with persistent workers (as the loop): the
    first includes worker start-up, the second is the steady rate."""
    sampler = StepBatchSampler(len(dataset), batch, batches, seed)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )
    passes = []
    for _ in range(2):
        start = time.perf_counter()
        stamps = [time.perf_counter() for _ in loader]
        passes.append((start, stamps))
    (cold_start, cold), (warm_start, warm) = passes
    return {
        "workers": workers,
        "batch": batch,
        "batches": len(warm),
        "first_batch_s": cold[0] - cold_start,
        "samples_per_s": len(warm) * batch / (warm[-1] - warm_start),
        "samples_per_s_cold": len(cold) * batch / (cold[-1] - cold_start),
    }


def markdown(rows: list[dict]) -> str:
    head = ["dataset", "stage", "size", "batch", "workers", "first batch s", "samples/s"]
    head.append("samples/s 1st pass")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            ",".join(r["datasets"]),
            r["stage"],
            str(r["image_size"]),
            str(r["batch"]),
            str(r["workers"]),
            f"{r['first_batch_s']:.2f}",
            f"{r['samples_per_s']:.1f}",
            f"{r['samples_per_s_cold']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data", help="data root holding <dataset>/processed/")
    parser.add_argument("--dataset", nargs="+", choices=("lrw", "mead"), default=["lrw"])
    parser.add_argument("--stage", choices=list(STAGES_BY_NAME), default="train_a2fd")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--batches", type=int, default=20, help="batches per worker count")
    parser.add_argument("--batch", type=int, help="batch size (default: the stage's in params)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--profile", default="tiny", help="model.profiles key (network sizes)")
    parser.add_argument("--clip-len", type=int, help="frames per clip (default: the stage's)")
    parser.add_argument("--splits", nargs="+", default=["train"])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--pin-memory", action="store_true", help="as the loop does on CUDA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error("--batches must be >= 1")

    all_params = yaml.safe_load(Path(args.params).read_text())
    params = StageParams.model_validate(all_params[args.stage])
    clip_len = args.clip_len or params.clip_len
    batch = args.batch or params.batch_size
    params = params.model_copy(update={"clip_len": clip_len, "batch_size": batch})
    sizes = {**all_params["model"]["profiles"][args.profile], "image_size": args.image_size}
    model = {"profile": args.profile, "profiles": {args.profile: sizes}}
    trainer = TrainerParams.model_validate(all_params.get("trainer", {}))
    try:
        paths = manifest_paths(Path(args.data), args.dataset)
        clips = [c for p in paths for c in load_clips(p, tuple(args.splits))]
        stage = build_for_timing(
            args.stage, model, params, trainer, clips, all_params.get("judges")
        )
    except EammError as err:
        parser.exit(2, f"{err} (split(s) {args.splits})\n")
    dataset = stage.dataset

    rows = []
    for workers in args.workers:
        print(f"{args.stage} workers {workers} ...", file=sys.stderr, flush=True)
        row = measure(dataset, batch, args.batches, workers, args.seed, args.pin_memory)
        row |= {
            "datasets": args.dataset,
            "stage": args.stage,
            "image_size": args.image_size,
            "clip_len": getattr(dataset, "clip_len", None),
            "clips": len(dataset.clips),
        }
        rows.append(row)
    print(markdown(rows))
    if args.json:
        meta = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
