"""Flow: one EAMM training stage (train_fomm, train_a2fd, finetune_a2fd, train_emotion)."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from eamm.config import StageParams, TrainerParams, load_section
from eamm.errors import EammError
from eamm.train.build import STAGES
from tasks.train import train_stage_task

STAGE_DIRS = {
    "train_fomm": "fomm",
    "train_a2fd": "a2fd",
    "finetune_a2fd": "a2fd_finetune",
    "train_emotion": "emotion",
}


@flow(name="train-stage")
def train_flow(
    stage: str,
    params_path: str = "params.yaml",
    data_root: str = "data",
    models_root: str = "models",
    resume: bool = True,
) -> dict:
    """Train ``stage`` into ``<models_root>/<stage dir>/`` (checkpoint, dvclive, plots)."""
    if stage not in STAGES:
        raise EammError(f"unknown stage '{stage}' (choose from {', '.join(STAGES)})")
    all_params = yaml.safe_load(Path(params_path).read_text())
    params = load_section(params_path, stage, StageParams)
    trainer = load_section(params_path, "trainer", TrainerParams)
    out_dir = Path(models_root) / STAGE_DIRS[stage]
    settings = {
        "model": all_params["model"],
        stage: all_params[stage],
        "trainer": all_params["trainer"],
    }
    metrics = train_stage_task(
        stage,
        all_params["model"],
        params,
        trainer,
        data_root,
        models_root,
        str(out_dir),
        settings,
        resume,
    )
    rows = "\n".join(f"| {k} | {v:.5g} |" for k, v in metrics.items() if isinstance(v, float))
    create_markdown_artifact(
        key=stage.replace("_", "-"),
        markdown=f"| metric | final |\n|---|---|\n{rows}\n\ncheckpoint: `{out_dir}/checkpoint.pt`",
        description=f"{stage} final metrics",
    )
    return metrics
