"""Time one optimisation step of each training stage on synthetic clips (no data loading).

Each stage is built by its own factory in ``eamm.stages`` (``eamm.train.build.build_for_timing``:
networks from a ``model.profiles`` size profile, the stage's dataset and loss), on synthetic
clips (random frames, MFCC windows and poses) whose batch the stage's dataset makes once, and
stepped the way ``eamm.train.loop`` does: frozen modules in eval mode with
``requires_grad_(False)``, one ``Adam(foreach=True)`` per parameter group, ``MultiStepLR``, bf16
autocast and channels_last on CUDA. Weights are random (no upstream checkpoints, random-init
VGG19): the step costs the same.

A step = forward + loss (including the loss functions' sample-image rendering, as in training)
+ finiteness check + zero_grad + backward + optimiser and scheduler steps. Reported: the median
of ``--steps`` timed steps after ``--warmup`` untimed ones (CUDA synchronised around each step)
and the peak memory (``torch.cuda.max_memory_allocated`` per stage on CUDA; on CPU the
process's peak RSS, ``ru_maxrss``, a high-water mark over everything run so far).

GPU, reference sizes (the EAMM anchors are fp32 on an H200):
    python benchmarks/train_step.py --profile reference --precision fp32 bf16 --json ref.json
CPU smoke run:
    python benchmarks/train_step.py --profile tiny --device cpu --steps 3 --warmup 1
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

from eamm.clips import Clip  # noqa: E402
from eamm.config import MEAD_EMOTIONS, StageParams, TrainerParams  # noqa: E402
from eamm.stages import EAMM_STAGES as STAGES  # noqa: E402
from eamm.tensors import pick_device  # noqa: E402
from eamm.train.build import build_for_timing  # noqa: E402
from eamm.train.loop import autocast_context  # noqa: E402

# EAMM's batch sizes (FOMM base: pairs) and its measured ms/step (fp32, H200, median of 25).
REFERENCE_BATCH = {"train_fomm": 8, "train_a2fd": 8, "finetune_a2fd": 6, "train_emotion": 16}
ANCHOR_MS = {
    "train_fomm": "80",
    "train_a2fd": "162-231",
    "finetune_a2fd": "332-419",
    "train_emotion": "418-620",
}
TINY_BATCH = 2
CLIP_LEN = 16


def parse_batches(values: list[str] | None) -> tuple[int | None, dict[str, int]]:
    """``--batch 4`` (every stage) and/or ``--batch train_a2fd=4 train_emotion=8``."""
    every, per_stage = None, {}
    for value in values or []:
        if "=" in value:
            name, _, number = value.partition("=")
            if name not in STAGES:
                raise SystemExit(f"--batch: unknown stage '{name}' (choose from {STAGES})")
            per_stage[name] = int(number)
        else:
            every = int(value)
    return every, per_stage


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor()
    if not name or name == platform.machine():  # Linux: the ISA only; take the CPU model
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return name or platform.machine() or "cpu"


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, else KiB


class SyntheticClip(Clip):
    """A clip of random frames, MFCC windows and poses (what the datasets read), so a stage's
    own dataset makes its batch without processed data."""

    def frames(self, indices: list[int], size: int | None = None) -> np.ndarray:
        rng = np.random.default_rng([len(self.clip_id), *indices])
        side = size or 256
        return rng.integers(0, 256, (len(indices), side, side, 3), dtype=np.uint8)

    def frame_width(self) -> int:
        return 256

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        rng = np.random.default_rng(len(name))
        if name == "pose.npy":
            return (0.1 * rng.standard_normal((self.num_frames, 7))).astype(np.float32)
        if name == "landmarks.npy":
            return rng.uniform(64, 192, (self.num_frames, 68, 2)).astype(np.float32)
        return rng.standard_normal((self.num_frames, 28, 13)).astype(np.float32)


def synthetic_clips(clip_len: int) -> list[SyntheticClip]:
    """Two speakers, each with a clip of every MEAD emotion (neutral ones for the identity)."""
    return [
        SyntheticClip(f"{speaker}_{emotion}", {}, clip_len + 8, speaker, emotion, "mead")
        for speaker in ("S1", "S2")
        for emotion in MEAD_EMOTIONS
    ]


def stage_batch(stage, batch: int, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``batch`` items of the stage's own dataset, collated as its loader does."""
    dataset = stage.dataset
    items = [dataset[(i % len(dataset), seed + i)] for i in range(batch)]
    return {k: v.to(device) for k, v in default_collate(items).items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str,
    batch: int,
    precision: str,
    args: argparse.Namespace,
    model_cfg: dict,
    params: StageParams,
    trainer: TrainerParams,
    device: torch.device,
) -> dict:
    """One row: median ms/step and peak memory of ``name`` at ``batch`` and ``precision``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    params = params.model_copy(update={"clip_len": args.clip_len, "batch_size": batch})
    model = {**model_cfg, "profile": args.profile}
    stage = build_for_timing(name, model, params, trainer, synthetic_clips(args.clip_len))
    trainable, frozen, groups = stage.trainable, stage.frozen, stage.param_groups
    loss_fn = stage.loss_fn
    channels_last = args.cpu_channels_last if device.type == "cpu" else args.channels_last
    for module in [*trainable.values(), *frozen.values()]:
        module.to(device)
        if channels_last:
            module.to(memory_format=torch.channels_last)
    for module in frozen.values():
        module.eval().requires_grad_(False)
    for module in trainable.values():
        module.train()
    optimizers = [
        torch.optim.Adam(
            [p for m in modules for p in trainable[m].parameters()],
            lr=params.lr,
            betas=tuple(params.betas),
            foreach=True,
        )
        for modules in groups.values()
    ]
    schedulers = [
        torch.optim.lr_scheduler.MultiStepLR(o, params.milestones, params.gamma) for o in optimizers
    ]
    data = stage_batch(stage, batch, args.seed, device)
    bf16 = precision == "bf16"

    def step(index: int) -> None:
        with autocast_context(device, bf16):
            losses, _ = loss_fn(data, index)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"{name}: loss is {total.item()} at step {index}")
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in optimizers:
            opt.step()
        for sched in schedulers:
            sched.step()
        float(total.detach())  # the loop logs the loss every step

    times = []
    for index in range(args.warmup + args.steps):
        _sync(device)
        tick = time.perf_counter()
        step(index)
        _sync(device)
        if index >= args.warmup:
            times.append((time.perf_counter() - tick) * 1000)
    row = {
        "stage": name,
        "batch": batch,
        "clip_len": None if name == "train_fomm" else args.clip_len,
        "precision": precision,
        "ms_per_step": statistics.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "peak_mib": peak_mib(device),
        "trainable_params": sum(p.numel() for m in trainable.values() for p in m.parameters()),
        "channels_last": channels_last,
    }
    return row


def markdown(rows: list[dict], reference: bool) -> str:
    head = ["stage", "batch", "precision", "ms/step", "peak MiB", "device"]
    if reference:
        head.append("EAMM fp32 H200 ms/step (batch)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ms = f"{r['ms_per_step']:.1f}" if r.get("ms_per_step") is not None else r.get("error", "-")
        mib = f"{r['peak_mib']:.0f}" if r.get("peak_mib") is not None else "-"
        cells = [r["stage"], str(r["batch"]), r["precision"], ms, mib, r["device"]]
        if reference:
            cells.append(f"{ANCHOR_MS[r['stage']]} ({REFERENCE_BATCH[r['stage']]})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--profile", default="reference", help="a model.profiles key")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--batch",
        nargs="+",
        metavar="N|STAGE=N",
        help="batch size for every stage and/or per stage (default: EAMM's for reference, "
        f"{TINY_BATCH} otherwise)",
    )
    parser.add_argument("--clip-len", type=int, default=CLIP_LEN, help="frames per clip")
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32"])
    parser.add_argument("--steps", type=int, default=25, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="keep contiguous memory format on CUDA (default: channels_last, as trainer)",
    )
    parser.add_argument(
        "--cpu-channels-last",
        action="store_true",
        help="channels_last on the CPU too (trainer.channels_last_cpu; the demo's)",
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    all_params = yaml.safe_load(Path(args.params).read_text())
    model_cfg = all_params["model"]
    if args.profile not in model_cfg["profiles"]:
        parser.error(f"--profile {args.profile}: not in {sorted(model_cfg['profiles'])}")
    trainer = TrainerParams.model_validate(all_params.get("trainer", {}))
    trainer = trainer.model_copy(update={"seed": args.seed})
    device = pick_device(args.device, "--device")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    every, per_stage = parse_batches(args.batch)
    reference = args.profile == "reference"
    name = device_name(device)

    precisions = []
    for precision in args.precision:
        if precision == "bf16" and not (device.type == "cuda" and torch.cuda.is_bf16_supported()):
            print(f"skipping bf16: autocast is CUDA-only in the trainer ({device})", flush=True)
            continue
        precisions.append(precision)

    rows = []
    for stage in args.stages:
        default = REFERENCE_BATCH[stage] if reference else TINY_BATCH
        batch = per_stage.get(stage, every if every is not None else default)
        params = StageParams.model_validate(all_params[stage])
        for precision in precisions:
            print(f"{stage} batch {batch} {precision} ...", file=sys.stderr, flush=True)
            try:
                row = measure(stage, batch, precision, args, model_cfg, params, trainer, device)
            except torch.cuda.OutOfMemoryError:
                row = {
                    "stage": stage,
                    "batch": batch,
                    "precision": precision,
                    "ms_per_step": None,
                    "peak_mib": None,
                    "error": "out of memory",
                }
            row |= {"device": name, "profile": args.profile}
            if reference:
                row |= {"anchor_ms": ANCHOR_MS[stage], "anchor_batch": REFERENCE_BATCH[stage]}
            rows.append(row)

    print(markdown(rows, reference))
    if args.json:
        meta = {
            "profile": args.profile,
            "device": name,
            "device_type": device.type,
            "steps": args.steps,
            "warmup": args.warmup,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_precision": torch.get_float32_matmul_precision(),
            "threads": torch.get_num_threads(),
            "trainer_bf16": trainer.bf16,
            "peak_memory": "cuda max_memory_allocated per stage"
            if device.type == "cuda"
            else "process ru_maxrss (high-water mark)",
        }
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0 if all(r.get("ms_per_step") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
