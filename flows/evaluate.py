"""Flow: the named evaluation protocol over each dataset, metrics.json and the report."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.atomic import write_text
from eamm.checkpoint import file_fingerprint
from eamm.config import GenerateParams, load_section
from eamm.evaluate import add_set_scores, aggregate
from eamm.evidence import judge_summary, training_summary
from eamm.folder_lock import folder_lock
from eamm.report import markdown, run_protocol, write_report
from eamm.stages import GENERATION_STAGES, JUDGES, STAGE_DIRS, checkpoint_path
from eamm.train.recipe import resolve_evaluate
from tasks.evaluate import evaluate_dataset


@flow(name="evaluate")
def evaluate_flow(
    params_path: str = "params.yaml",
    data_root: str = "data",
    checkpoints: str = "models",
    out_dir: str = "reports",
) -> dict:
    """metrics.json, clip_scores.json and the report in ``out_dir``; one evaluation per folder
    at a time (its lock)."""
    with folder_lock(out_dir, "evaluation"):
        return _evaluate(params_path, data_root, checkpoints, Path(out_dir))


def _evaluate(params_path: str, data_root: str, checkpoints: str, out: Path) -> dict:
    params = resolve_evaluate(params_path)
    generate = load_section(params_path, "generate", GenerateParams)
    model = yaml.safe_load(Path(params_path).read_text()).get("model", {})
    scores, stills, fid = [], {}, {}
    for dataset in params.datasets:
        clip_scores, clip_stills, fid[dataset] = evaluate_dataset(
            dataset, data_root, checkpoints, params, generate, model
        )
        scores += clip_scores
        stills.update(clip_stills)
    table = aggregate(scores)
    for dataset, values in fid.items():
        add_set_scores(table, dataset, "fid", values)
    paths = {stage: checkpoint_path(checkpoints, stage) for stage in (*GENERATION_STAGES, *JUDGES)}
    models = {STAGE_DIRS[s]: file_fingerprint(p) for s, p in paths.items() if p.is_file()}
    protocol = run_protocol(params, generate)
    metrics = {
        **table,
        "judges": judge_summary(Path(checkpoints), params.resolved().vshift),
        "training": training_summary(Path(checkpoints)),
    }
    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_text(out / "clip_scores.json", json.dumps([s.__dict__ for s in scores], indent=1))
    write_report(metrics, stills, protocol, models, out, checkpoints=Path(checkpoints))
    create_markdown_artifact(
        key="evaluation",
        markdown=markdown(metrics, protocol, models),
        description=f"Evaluation under protocol {params.protocol}",
    )
    return metrics
