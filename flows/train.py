"""Flow: one EAMM training stage (train_fomm, train_a2fd, finetune_a2fd, train_emotion)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from eamm.errors import EammError
from eamm.train.build import STAGES
from eamm.train.run import stage_dir
from tasks.train import train_stage_task


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
    metrics = train_stage_task(stage, params_path, data_root, models_root, resume)
    out_dir = stage_dir(models_root, stage)
    rows = "\n".join(f"| {k} | {v:.5g} |" for k, v in metrics.items() if isinstance(v, float))
    create_markdown_artifact(
        key=stage.replace("_", "-"),
        markdown=f"| metric | final |\n|---|---|\n{rows}\n\ncheckpoint: `{out_dir}/checkpoint.pt`",
        description=f"{stage} final metrics",
    )
    return metrics
