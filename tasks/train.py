"""Task: run one training stage (one long task; the work is inside PyTorch)."""

from __future__ import annotations

import json

from prefect import task
from prefect.logging import get_run_logger

from eamm.config import TrainerParams, load_section
from eamm.folder_lock import folder_lock
from eamm.tensors import pick_device
from eamm.train.run import launch_distributed, run_stage, stage_dir, world_size


@task(name="run-training")
def train_stage_task(
    stage: str, params_path: str, data_root: str, models_root: str, resume: bool = True
) -> dict:
    """In-process on one device; through torchrun (DDP) when several processes are asked for
    or several GPUs are visible. One training of a stage at a time (the folder's lock)."""
    logger = get_run_logger()
    trainer = load_section(params_path, "trainer", TrainerParams)
    pick_device(trainer.device, "trainer.device")  # one line here, not one per torchrun rank
    processes = world_size(trainer)
    out = stage_dir(models_root, stage)
    with folder_lock(out, f"training of {stage}"):
        if processes == 1:
            return run_stage(stage, params_path, data_root, models_root, resume)
        logger.info("%s: launching %d processes with torchrun", stage, processes)
        launch_distributed(stage, params_path, data_root, models_root, resume, processes)
        return json.loads((out / "metrics.json").read_text())
