"""Run one training stage from a params file, in this process or as one rank of ``torchrun``.

``python -m eamm.train.run STAGE --params params.yaml`` is what the Prefect task launches with
``torchrun --nproc_per_node N`` when a stage trains on several GPUs (or, for tests, several CPU
processes with the gloo backend).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from eamm.config import TrainerParams, load_section, read_params
from eamm.errors import EammError
from eamm.stages import JUDGES, STAGE_DIRS, STAGES_BY_NAME
from eamm.tensors import pick_device
from eamm.train.build import build_stage
from eamm.train.loop import train_stage
from eamm.train.recipe import in_steps, plan_line, resolve_stage


def stage_dir(models_root: str | Path, stage: str) -> Path:
    return Path(models_root) / STAGE_DIRS[stage]


def check_stage(stage: str) -> None:
    if stage not in STAGES_BY_NAME:
        raise EammError(f"unknown stage '{stage}' (choose from {', '.join(STAGES_BY_NAME)})")


def world_size(trainer: TrainerParams) -> int:
    """Processes to train with: ``trainer.processes``, else one per visible GPU (min 1)."""
    if trainer.processes is not None:
        return trainer.processes
    return max(1, torch.cuda.device_count())


def run_stage(
    stage: str, params_path: str, data_root: str, models_root: str, resume: bool = True
) -> dict:
    """Train ``stage`` in this process (one rank when launched by torchrun), with the selected
    recipe laid over its section and a length in epochs turned into steps for its clips."""
    check_stage(stage)
    all_params = read_params(Path(params_path))
    resolved = resolve_stage(params_path, stage)
    trainer = load_section(params_path, "trainer", TrainerParams)
    pick_device(trainer.device, "trainer.device")  # a bad device stops before the data loads
    judges = all_params.get("judges") if stage in JUDGES else None
    built, fingerprint = build_stage(
        stage, resolved.model, resolved.params, trainer, Path(data_root), Path(models_root), judges
    )
    params = in_steps(resolved.params, len(built.dataset))
    print(plan_line(stage, resolved, params, len(built.dataset)), flush=True)
    if params is not resolved.params:
        built.extra["schedule"] = {
            "num_epochs": resolved.params.num_epochs,
            "num_repeats": resolved.params.num_repeats,
            "num_clips": len(built.dataset),
            "steps": params.steps,
            "milestones": params.milestones,
        }
    settings = {
        "recipe": resolved.recipe,
        "model": resolved.model,
        stage: params.model_dump(mode="json"),
        "trainer": all_params["trainer"],
    } | ({"judges": judges} if judges is not None else {})
    return train_stage(
        built, params, trainer, stage_dir(models_root, stage), fingerprint, settings, resume=resume
    )


def launch_distributed(
    stage: str, params_path: str, data_root: str, models_root: str, resume: bool, processes: int
) -> None:
    """Start ``processes`` ranks with torchrun on this machine and wait for them."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "eamm.train.run",
        stage,
        "--params",
        params_path,
        "--data-root",
        data_root,
        "--models-root",
        models_root,
    ]
    if not resume:
        cmd.append("--no-resume")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise EammError(f"{stage}: torchrun with {processes} processes exited {proc.returncode}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=list(STAGES_BY_NAME))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--models-root", default="models")
    parser.add_argument("--no-resume", action="store_true")
    args = parser.parse_args(argv)
    run_stage(args.stage, args.params, args.data_root, args.models_root, not args.no_resume)


if __name__ == "__main__":
    main()
