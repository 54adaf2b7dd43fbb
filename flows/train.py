"""Flow: one training stage: the four EAMM stages or the two evaluation judges."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.train.run import check_stage, stage_dir
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
    check_stage(stage)
    metrics = train_stage_task(stage, params_path, data_root, models_root, resume)
    out_dir = stage_dir(models_root, stage)
    rows = "\n".join(f"| {k} | {v:.5g} |" for k, v in metrics.items() if isinstance(v, float))
    create_markdown_artifact(
        key=stage.replace("_", "-"),
        markdown=f"| metric | final |\n|---|---|\n{rows}\n\ncheckpoint: `{out_dir}/checkpoint.pt`",
        description=f"{stage} final metrics",
    )
    return metrics
