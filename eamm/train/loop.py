"""The training loop shared by all stages: device, autocast, exact resume, logging.

A stage supplies its trainable and frozen modules, its optimisers, its dataset and a loss
function; the loop does the rest. Frozen teachers run in eval mode under no_grad (EAMM ran them
in train mode with autograd: slower, and their BatchNorm statistics drifted).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eamm.atomic import remove_leftovers, replacing, write_text
from eamm.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_all,
    set_rng_state,
    unwrap,
)
from eamm.config import StageParams, TrainerParams
from eamm.errors import EammError
from eamm.stages import CHECKPOINT_NAME, CONFUSION_PNG, OFFSETS_PNG, STAGES_BY_NAME
from eamm.strict_json import json_text
from eamm.tensors import pick_device
from eamm.train.datasets import SeededClips, StepBatchSampler

LossFn = Callable[[dict[str, torch.Tensor], int], tuple[dict[str, torch.Tensor], np.ndarray | None]]
# Settings that may change between a checkpoint and its continuation (run length, logging).
RESUMABLE_CHANGES = {
    "steps",
    "checkpoint_every",
    "log_every",
    "sample_every",
    "num_workers",
    "frame_cache_mb",
}


def _resume_key(settings: dict) -> dict:
    """Settings with the run-length/logging keys removed, for comparing runs."""
    if isinstance(settings, dict):
        return {k: _resume_key(v) for k, v in settings.items() if k not in RESUMABLE_CHANGES}
    return settings


def _in_use(settings: dict) -> dict:
    """Recorded settings with what the stage's networks are not built from left out: the size
    profiles the run did not use (of ``model`` and ``judges``: an edit to the demo's ``tiny``
    profile started every ``reference`` run afresh, though nothing it trains with had
    changed), and the used profile's keys other than the stage's ``profile_sections`` (an edit
    to stage 3's network retrained FOMM and stage 1 to the same weights)."""
    model = settings.get("model") if isinstance(settings, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("profiles"), dict):
        return settings
    name = model.get("profile")
    used = model["profiles"].get(name)
    stage = next((STAGES_BY_NAME[k] for k in settings if k in STAGES_BY_NAME), None)
    if isinstance(used, dict) and stage is not None:
        used = {k: v for k, v in used.items() if k in stage.profile_sections}
    kept = dict(settings)
    kept["model"] = {**model, "profiles": {name: used}}
    judges = settings.get("judges")
    if isinstance(judges, dict) and isinstance(judges.get("profiles"), dict):
        kept["judges"] = {**judges, "profiles": {name: judges["profiles"].get(name)}}
    return kept


def flat_settings(value, prefix: str = "") -> dict[str, object]:
    """Nested settings as {dotted key: value} (an empty section is a value)."""
    if isinstance(value, dict) and (value or not prefix):
        return {
            k: v
            for key, item in value.items()
            for k, v in flat_settings(item, f"{prefix}{key}.").items()
        }
    return {prefix.rstrip("."): value}


def _placeless(settings: dict) -> dict:
    """Recorded settings with the VGG19 file's place left out (whether one is given stays):
    its file moved with the project, a long run started afresh on the same weights."""
    model = settings.get("model") if isinstance(settings, dict) else None
    perceptual = model.get("perceptual") if isinstance(model, dict) else None
    if not isinstance(perceptual, dict) or not perceptual.get("vgg_weights"):
        return settings
    perceptual = {**perceptual, "vgg_weights": "a local file"}
    return {**settings, "model": {**model, "perceptual": perceptual}}


# (dotted key, the recorded value, the given value; "unset" where one side lacks the key)
Difference = tuple[str, object, object]


def setting_differences(recorded: dict, given: dict) -> list[Difference]:
    """Each dotted key of two nested settings whose values differ, in order of appearance."""
    old, new = flat_settings(recorded), flat_settings(given)
    return [
        (k, old.get(k, "unset"), new.get(k, "unset"))
        for k in dict.fromkeys([*old, *new])
        if (k in old, old.get(k)) != (k in new, new.get(k))
    ]


def first_three(parts: list[str]) -> str:
    """The first three of ``parts``, and how many more."""
    return "; ".join(parts[:3]) + (f"; {len(parts) - 3} more" if len(parts) > 3 else "")


def _setting_changes(recorded: dict, given: dict) -> str:
    """The first three changed settings, as "key: old -> new"."""
    return first_three([f"{k}: {a} -> {b}" for k, a, b in setting_differences(recorded, given)])


def _as_run(settings: dict, device: torch.device, world: int) -> dict:
    """Recorded settings with the trainer's keys as they act on ``device`` with ``world``
    processes: ``bf16`` off where autocast does not apply, the one channels-last key read,
    ``device: auto`` and ``processes: null`` resolved. Toggling ``bf16`` on a CPU (or
    ``processes`` null to 1) restarted a run that trains the same weights."""
    trainer = settings.get("trainer") if isinstance(settings, dict) else None
    if not isinstance(trainer, dict):
        return settings
    trainer = {**TrainerParams().model_dump(), **trainer}  # a key params.yaml leaves out
    unread = "channels_last" if device.type == "cpu" else "channels_last_cpu"
    acting = {k: v for k, v in trainer.items() if k != unread}
    acting["bf16"] = bool(trainer["bf16"]) and _bf16_applies(device)
    # resolved where left to the machine; a device or process count named stays as named
    named = str(trainer["device"])
    acting["device"] = device.type if named == "auto" else named.split(":")[0]
    acting["processes"] = world if trainer["processes"] is None else trainer["processes"]
    return {**settings, "trainer": acting}


@dataclass
class Stage:
    name: str
    trainable: dict[str, nn.Module]
    frozen: dict[str, nn.Module]
    param_groups: dict[str, list[str]]  # optimiser name -> trainable module names
    dataset: Dataset
    loss_fn: LossFn
    extra: dict = field(default_factory=dict)  # recorded in the checkpoint (e.g. emotion_kp)
    # Held-out numbers after training (the judges' accuracy), merged into metrics.json; it is
    # given the stage's folder to draw them in (the judges' confusion.png, offsets.png).
    validate: Callable[[torch.device, Path], dict] | None = None
    # Optimiser states a fresh run continues from (an upstream stage's Adam moments and step
    # counts); learning rate and betas stay this stage's.
    initial_optimizers: dict[str, dict] = field(default_factory=dict)
    # What it starts from: upstream stage name -> file_fingerprint of the checkpoint it loaded
    # (empty for train_fomm and the judges); recorded in the checkpoint as ``upstream``.
    upstream: dict[str, str] = field(default_factory=dict)


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this rank's device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def _average_gradients(modules: list[nn.Module], world: int) -> None:
    """DDP's gradient all-reduce, done explicitly so the stage closures keep plain modules."""
    import torch.distributed as dist

    for module in modules:
        for param in module.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad)
                param.grad.div_(world)


def _rank_divergence(modules: list[nn.Module]) -> float:
    """Largest difference between any rank's weights and rank 0's after training: 0 when the
    gradient averaging kept the replicas identical (recorded so it can be checked)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().flatten().float() for m in modules for p in m.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max()
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)


def _continue_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load ``saved``'s per-parameter state (Adam moments, step counts) into ``optimizer``,
    keeping its own hyperparameters (lr, betas) and so this stage's schedule."""
    own = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, hyper in zip(optimizer.param_groups, own, strict=True):
        group.update(hyper)


def _bf16_applies(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast_context(device: torch.device, bf16: bool):
    if bf16 and _bf16_applies(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _save_plot(history: list[dict], path: Path) -> None:
    """Loss curves as PNG (dvc plots' HTML needs a CDN, which offline users lack)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for h in history for k in h if k.startswith("loss/")})
    fig, ax = plt.subplots(figsize=(7, 4))
    if not history:
        ax.text(0.5, 0.5, "no steps logged", ha="center")
    steps = [h["step"] for h in history]
    for key in keys:
        ax.plot(steps, [h.get(key, np.nan) for h in history], label=key.removeprefix("loss/"))
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _replay_dvclive(history: list[dict], params: StageParams, folder: Path) -> None:
    """Rewrite the dvclive logs from the full history kept in the checkpoint, so `dvc plots`
    and `dvc metrics` show the whole run even when it resumed (DVC clears logs before a run)."""
    from eamm.train.live import training_log

    shutil.rmtree(folder, ignore_errors=True)
    live = training_log(folder)
    for record in history:
        if record["step"] % params.log_every and record["step"] != params.steps:
            continue
        live.step = record["step"]
        for key, value in record.items():
            if key != "step":
                live.log_metric(key, value)
        live.next_step()
    live.end()


def _final_sample(
    stage: Stage, params: StageParams, trainer: TrainerParams, device: torch.device, out: Path
) -> None:
    """Write samples.png from one held batch with the final weights (also after a resume
    that had no steps left to run)."""
    sampler = StepBatchSampler(
        len(stage.dataset), min(params.batch_size, 2), params.steps + 1, trainer.seed, params.steps
    )
    batch = next(iter(DataLoader(stage.dataset, batch_sampler=sampler, num_workers=0)))
    for module in stage.trainable.values():
        module.eval()
    with torch.no_grad(), autocast_context(device, trainer.bf16):
        _, grid = stage.loss_fn(_to_device(batch, device), params.steps)
    if grid is not None:
        from PIL import Image

        with replacing(out / "samples.png") as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")


def _why_not_resume(
    state: dict | None,
    stage: Stage,
    params: StageParams,
    settings: dict,
    manifest_fingerprint: str,
    device: torch.device,
    world: int,
) -> str:
    """Why ``state`` (the stage's checkpoint) must not be resumed, or "" when it may: a run past
    this run's ``steps`` (its model is not this run's), other settings, other upstream
    checkpoints (where the checkpoint records them: older ones do not, and the combined
    fingerprint still covers theirs) or other data."""
    if state is None:
        return ""
    step = state.get("step")
    if isinstance(step, int) and step > params.steps:
        return f"checkpoint is at step {step}, past {stage.name}.steps {params.steps}"
    recorded, given = (
        _resume_key(_in_use(_placeless(_as_run(s, device, world))))
        for s in (state.get("params", {}), settings)
    )
    if recorded != given:
        changes = _setting_changes(recorded, given)
        return "trained with other settings" + (f" ({changes})" if changes else "")
    recorded = state.get("upstream")
    if isinstance(recorded, dict) and recorded != stage.upstream:
        changed = sorted(set(recorded) ^ set(stage.upstream))
        changed += sorted(
            u for u in set(recorded) & set(stage.upstream) if recorded[u] != stage.upstream[u]
        )
        return f"trained from other upstream checkpoint(s) ({', '.join(changed)})"
    if state.get("manifest_fingerprint") != manifest_fingerprint:
        return "trained on other data (the manifests' content differs)"
    return ""


PREVIOUS_RUN = "previous"  # where a fresh start moves the run it replaces
RESTORING = ".restoring"  # the previous run on its way back in place (``_swap_with_previous``)
# What a run draws from its checkpoint at the end (metrics.json holds the final step and the
# judges' held-out numbers, which the evaluation reports), and all of a run's files.
DRAWN_FILES = ("metrics.json", "loss.png", "samples.png", CONFUSION_PNG, OFFSETS_PNG)
RUN_FILES = (CHECKPOINT_NAME, *DRAWN_FILES)


def _set_aside(out: Path) -> str:
    """Move an earlier run's files into ``out/previous/`` (replacing an older one there) and
    drop its dvclive logs, before a fresh start writes any of its own: killed at any point,
    the folder then never shows the old checkpoint beside the new run's plots, and the old
    model is kept, not overwritten at the first checkpoint. Says where it went."""
    previous = out / PREVIOUS_RUN
    shutil.rmtree(previous, ignore_errors=True)
    _move_run(out, previous)
    shutil.rmtree(out / "dvclive", ignore_errors=True)
    return f"the earlier run's checkpoint, metrics and plots moved to {previous}"


def _move_run(source: Path, target: Path) -> None:
    """Move a run's files (``RUN_FILES``, the checkpoint first) from ``source`` to ``target``."""
    target.mkdir(exist_ok=True)
    for name in RUN_FILES:
        if (source / name).is_file():
            os.replace(source / name, target / name)


def _swap_with_previous(out: Path) -> None:
    """Put the run in ``out/previous/`` back in place and this one into ``previous/``: a run
    set aside for other settings is resumed when they are back (changing ``lr`` and back
    replaced the first run with the second and trained the first again from step 0)."""
    os.replace(out / PREVIOUS_RUN, out / RESTORING)
    _finish_swap(out)


def _finish_swap(out: Path) -> None:
    """Finish ``_swap_with_previous`` (from wherever a kill stopped it; nothing to do without
    its folder): this run's files go to ``previous/`` while the incoming checkpoint has not
    moved, then the incoming files move in, the checkpoint first."""
    incoming = out / RESTORING
    if not incoming.is_dir():
        return
    if (incoming / CHECKPOINT_NAME).is_file():
        _move_run(out, out / PREVIOUS_RUN)
        shutil.rmtree(out / "dvclive", ignore_errors=True)
    _move_run(incoming, out)
    shutil.rmtree(incoming)


def _resumable_previous(out: Path, why_not, device: torch.device) -> dict | None:
    """The run in ``out/previous/`` when it may be resumed under this run's settings, data and
    upstream checkpoints (``why_not``: ``_why_not_resume`` for a state), else None."""
    path = out / PREVIOUS_RUN / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path, device)
    except EammError:  # a damaged set-aside run: not taken, and left where it is
        return None
    return None if why_not(state) else state


def train_stage(
    stage: Stage,
    params: StageParams,
    trainer: TrainerParams,
    out_dir: str | Path,
    manifest_fingerprint: str,
    settings: dict,
    resume: bool = True,
) -> dict:
    """Train ``stage`` for ``params.steps`` steps into ``out_dir``; returns the final metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rank, world, device = init_distributed(pick_device(trainer.device, "trainer.device"))
    seed_all(trainer.seed)
    nhwc = trainer.channels_last_cpu if device.type == "cpu" else trainer.channels_last
    memory_format = torch.channels_last if nhwc else None
    for module in [*stage.trainable.values(), *stage.frozen.values()]:
        module.to(device)
        if memory_format is not None:
            module.to(memory_format=memory_format)
    for module in stage.frozen.values():
        # eval: fixed BatchNorm statistics (EAMM ran teachers in train mode: frozen_eval false)
        module.train(not trainer.frozen_eval).requires_grad_(False)
    optimizers = {
        name: torch.optim.Adam(
            [p for m in modules for p in stage.trainable[m].parameters()],
            lr=params.lr,
            betas=tuple(params.betas),
            foreach=True,
        )
        for name, modules in stage.param_groups.items()
    }
    schedulers = {
        name: torch.optim.lr_scheduler.MultiStepLR(opt, params.milestones, params.gamma)
        for name, opt in optimizers.items()
    }
    for name, saved in stage.initial_optimizers.items():
        _continue_optimizer(optimizers[name], saved)
    start = 0
    history: list[dict] = []
    path = out / CHECKPOINT_NAME
    if rank == 0:
        _finish_swap(out)  # a swap a kill interrupted
    if world > 1:  # every rank reads the checkpoint the swap left
        import torch.distributed as dist

        dist.barrier()
    state = load_checkpoint(path, device) if resume and path.is_file() else None

    def why_not(state: dict | None) -> str:
        return _why_not_resume(state, stage, params, settings, manifest_fingerprint, device, world)

    why = why_not(state)
    if why:
        state = None
        earlier = _resumable_previous(out, why_not, device) if world == 1 else None
        if earlier is not None:
            _swap_with_previous(out)
            state = earlier
            print(
                f"{path}: {why}; the run in {out / PREVIOUS_RUN} was trained with this run's "
                f"settings, data and upstream: put back and resumed (the other run moved there)"
            )
    if rank == 0:
        remove_leftovers(out / name for name in RUN_FILES)  # a killed writer's staged files
        if state is None and path.is_file():  # afresh over an earlier run
            kept = _set_aside(out)
            print(f"{path}: {why or 'resume off'}; starting {stage.name} afresh ({kept})")
    if state is not None:
        for name, module in stage.trainable.items():
            unwrap(module).load_state_dict(state["models"][name])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        set_rng_state(state["rng"])
        start = int(state["step"])
        if rank == 0:  # a run extended or resumed said nothing of where it went on from
            left = max(params.steps - start, 0)
            print(f"{path}: resuming {stage.name} at step {start} of {params.steps} ({left} to go)")
        if start < params.steps and rank == 0:  # what an earlier end drew goes, as DVC does
            for name in DRAWN_FILES:
                (out / name).unlink(missing_ok=True)
        # checkpoints written before 2026-12-02 also kept each step's wall-clock throughput
        history = [
            {k: v for k, v in r.items() if k != "samples_per_s"} for r in state.get("history", [])
        ]

    def checkpoint(step: int) -> None:
        save_checkpoint(
            {
                "stage": stage.name,
                "step": step,
                "models": {n: unwrap(m).state_dict() for n, m in stage.trainable.items()},
                "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
                "rng": rng_state(),
                "params": settings,
                "manifest_fingerprint": manifest_fingerprint,
                "upstream": stage.upstream,
                "history": history,
                **stage.extra,
            },
            path,
        )

    sampler = StepBatchSampler(
        len(stage.dataset), params.batch_size, params.steps, trainer.seed, start, rank, world
    )
    workers = trainer.num_workers
    if isinstance(stage.dataset, SeededClips):
        stage.dataset.cache_frames(trainer.frame_cache_mb * 2**20)
    loader = DataLoader(
        stage.dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        # its own generator for the workers' base seed: drawing it from the global one would
        # leave a resumed run's saved RNG state one draw apart from a straight run's
        generator=torch.Generator().manual_seed(trainer.seed),
    )
    for module in stage.trainable.values():
        module.train()
    if trainer.compile:  # in place: the loss functions and state-dict keys stay the same
        for module in [*stage.trainable.values(), *stage.frozen.values()]:
            module.compile()
    from eamm.train.live import training_log

    lead = rank == 0  # only the first process writes checkpoints, logs and plots
    live = training_log(out / "dvclive", resume=start > 0) if lead else None
    tick, ran = time.perf_counter(), 0
    for step, batch in enumerate(loader, start):
        batch = _to_device(batch, device)
        with autocast_context(device, trainer.bf16):
            losses, grid = stage.loss_fn(batch, step)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(f"{stage.name}: loss is {total.item()} at step {step}")
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        if world > 1:
            _average_gradients(list(stage.trainable.values()), world)
        lr = next(iter(optimizers.values())).param_groups[0]["lr"]  # this step's
        for opt in optimizers.values():
            opt.step()
        for sched in schedulers.values():
            sched.step()
        # Only values that reproduce: the checkpoint, its dvclive replay and metrics.json are
        # tracked outputs, the same bytes on every run (the throughput is printed at the end).
        record = {"step": step + 1, "loss/total": float(total.detach())}
        record.update({f"loss/{k}": float(v.detach()) for k, v in losses.items()})
        record["lr"] = lr
        ran += 1
        history.append(record)
        if not lead:
            continue
        if (step + 1) % params.log_every == 0 or step + 1 == params.steps:
            for key, value in record.items():
                if key != "step":
                    live.log_metric(key, value)
            live.step = step + 1
            live.next_step()
        if grid is not None and (step + 1) % params.sample_every == 0:
            from PIL import Image

            with replacing(out / "samples.png") as tmp:
                Image.fromarray(grid).save(tmp, format="PNG")
        if (step + 1) % params.checkpoint_every == 0 or step + 1 == params.steps:
            checkpoint(step + 1)
    rate = ran * params.batch_size / (time.perf_counter() - tick) if ran else 0.0
    final = dict(history[-1]) if history else {}
    if "perceptual_vgg" in stage.extra:  # which VGG19 the perceptual loss used
        final["perceptual_vgg"] = stage.extra["perceptual_vgg"]
    if world > 1:
        final["ddp/max_weight_diff"] = _rank_divergence(list(stage.trainable.values()))
    if lead:
        live.end()
        _replay_dvclive(history, params, out / "dvclive")
        _final_sample(stage, params, trainer, device, out)
        _save_plot(history, out / "loss.png")
        if stage.validate is not None:
            final.update(stage.validate(device, out))
        write_text(out / "metrics.json", json_text(final, indent=2) + "\n")
    if lead and ran:  # after the outputs: an orphaned deployment run's stdout is a dead pipe
        with contextlib.suppress(BrokenPipeError):
            print(f"{stage.name}: {ran} steps, {rate:.3g} samples/s", flush=True)  # 0.04 at 256
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return final
