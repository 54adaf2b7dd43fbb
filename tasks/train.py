"""Task: run one training stage (one long task; the work is inside PyTorch)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from eamm.config import StageParams, TrainerParams
from eamm.train.build import build_stage
from eamm.train.loop import train_stage


@task(name="train-stage")
def train_stage_task(
    name: str,
    model: dict,
    params: StageParams,
    trainer: TrainerParams,
    data_root: str,
    models_root: str,
    out_dir: str,
    settings: dict,
    resume: bool = True,
) -> dict:
    logger = get_run_logger()
    stage, fingerprint = build_stage(
        name, model, params, trainer, Path(data_root), Path(models_root)
    )
    logger.info("%s: %d training items, manifest %s", name, len(stage.dataset), fingerprint)
    if "emotion_kp" in stage.extra:
        logger.info("emotion keypoints selected: %s", stage.extra["emotion_kp"])
    return train_stage(stage, params, trainer, out_dir, fingerprint, settings, resume=resume)
