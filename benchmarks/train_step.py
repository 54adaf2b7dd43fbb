"""Time one optimisation step of each training stage on random tensors (no data loading).

Each stage is assembled the way ``eamm.train.build`` and ``eamm.train.loop`` do it: networks
from a ``model.profiles`` size profile, the stage's own loss function from
``eamm.train.stages``, frozen modules in eval mode with ``requires_grad_(False)``, one
``Adam(foreach=True)`` per parameter group, ``MultiStepLR``, bf16 autocast and channels_last on
CUDA. Weights are random (no upstream checkpoints, random-init VGG19): the step costs the same.

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

import torch  # noqa: E402
import yaml  # noqa: E402

from eamm.config import StageParams, TrainerParams  # noqa: E402
from eamm.models.build import build_emotion_net, build_networks  # noqa: E402
from eamm.tensors import pick_device  # noqa: E402
from eamm.train.build import STAGES, perceptual_weights  # noqa: E402
from eamm.train.loop import autocast_context  # noqa: E402
from eamm.train.stages import (  # noqa: E402
    PerceptualLoss,
    a2fd_losses,
    emotion_losses,
    fomm_losses,
)

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
EMOTION_KP = [1, 4, 6, 8]
NUM_EMOTIONS = 8


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


def build_stage(name: str, sizes: dict, model_cfg: dict, params: StageParams, seed: int):
    """(trainable, frozen, param_groups, loss_fn) of one stage, like eamm.train.build."""
    nets = build_networks(sizes)
    weights = dict(params.loss_weights)

    def perceptual() -> PerceptualLoss:  # random-init VGG19: timing needs no ImageNet weights
        return PerceptualLoss(sizes["perceptual_scales"], perceptual_weights(name, weights), None)

    kp, gen = nets["kp_detector"], nets["generator"]
    audio, head = nets["audio_feature"], nets["kp_detector_a"]
    if name == "train_fomm":
        perc = perceptual()
        trainable = {"kp_detector": kp, "generator": gen}
        groups = {"kp_detector": ["kp_detector"], "generator": ["generator"]}
        return trainable, {"perceptual": perc}, groups, fomm_losses(kp, gen, perc, weights, seed)
    if name in ("train_a2fd", "finetune_a2fd"):
        trainable = {"audio_feature": audio, "kp_detector_a": head}
        groups = {"audio_feature": ["audio_feature", "kp_detector_a"]}
        frozen: dict[str, torch.nn.Module] = {"kp_detector": kp}
        generator, perc = None, None
        if name == "finetune_a2fd":
            generator, perc = gen, perceptual()
            trainable["generator"] = gen
            groups["generator"] = ["generator"]
            frozen["perceptual"] = perc
        loss = a2fd_losses(kp, audio, head, weights, generator, perc)
        return trainable, frozen, groups, loss
    emotion = build_emotion_net(sizes, len(EMOTION_KP))
    loss = emotion_losses(kp, audio, head, emotion, EMOTION_KP, weights, params.classify)
    frozen = {"kp_detector": kp, "audio_feature": audio, "kp_detector_a": head}
    return {"emo_detector": emotion}, frozen, {"emo_detector": ["emo_detector"]}, loss


def random_batch(
    name: str, batch: int, clip_len: int, sizes: dict, device: torch.device, seed: int
) -> dict[str, torch.Tensor]:
    """Random tensors shaped like the stage dataset's batches (eamm.train.datasets)."""
    gen = torch.Generator().manual_seed(seed)
    s = sizes["image_size"]
    audio = sizes["audio"]
    window, coeffs = audio.get("mfcc_window", 28), audio.get("mfcc_coeffs", 12)
    pose_dim = audio.get("pose_dim", 6)

    def image(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, 3, s, s, generator=gen)

    if name == "train_fomm":
        out = {"source": image(batch), "driving": image(batch)}
    else:
        out = {
            "example_image": image(batch),
            "driving": image(batch, clip_len),
            "driving_audio": torch.randn(batch, clip_len, window, coeffs, generator=gen),
            "driving_pose": 0.1 * torch.randn(batch, clip_len, pose_dim, generator=gen),
        }
        if name == "train_emotion":
            out["transformed_driving"] = image(batch, clip_len)
            out["emotion"] = torch.randint(0, NUM_EMOTIONS, (batch,), generator=gen)
    return {k: v.to(device) for k, v in out.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str,
    batch: int,
    precision: str,
    args: argparse.Namespace,
    sizes: dict,
    model_cfg: dict,
    params: StageParams,
    device: torch.device,
) -> dict:
    """One row: median ms/step and peak memory of ``name`` at ``batch`` and ``precision``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(args.seed)
    trainable, frozen, groups, loss_fn = build_stage(name, sizes, model_cfg, params, args.seed)
    channels_last = args.channels_last and device.type == "cuda"
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
    data = random_batch(name, batch, args.clip_len, sizes, device, args.seed)
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
    sizes = model_cfg["profiles"][args.profile]
    trainer = TrainerParams.model_validate(all_params.get("trainer", {}))
    device = pick_device(args.device)
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
                row = measure(stage, batch, precision, args, sizes, model_cfg, params, device)
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
