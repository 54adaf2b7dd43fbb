"""Flow: the named evaluation protocol over each dataset, metrics.json and the report."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.atomic import remove_leftovers
from eamm.checkpoint import checkpoint_fingerprints
from eamm.config import GenerateParams, load_section
from eamm.errors import EammError
from eamm.evaluate import (
    add_set_scores,
    aggregate,
    cap_cuts,
    generation_notes,
    short_clips_note,
    source_notes,
)
from eamm.evaluation_journal import remove_journal
from eamm.evidence import judge_summary, training_summary
from eamm.folder_lock import folder_lock
from eamm.judges.scoring import missing_judge_note, missing_judges
from eamm.report import (
    REPORT_FILES,
    markdown,
    run_protocol,
    without_missing_judges,
    write_report,
)
from eamm.stages import CHECKPOINT_NAME, GENERATION_STAGES, JUDGES, STAGE_DIRS, manifest_path
from eamm.strict_json import finite
from eamm.train.recipe import resolve_evaluate
from tasks.evaluate import evaluate_dataset


@flow(name="evaluate")
def evaluate_flow(
    params_path: str = "params.yaml",
    data_root: str = "data",
    checkpoints: str = "models",
    out_dir: str = "reports",
) -> dict:
    """metrics.json, clip_scores.json and the report in ``out_dir``, replaced as one set (all
    from this run or, if writing fails, all as before); one evaluation per folder at a time
    (its lock). A judge without a checkpoint leaves its columns empty: a ``note:`` line on
    stderr says so, as ``eamm generate`` prints its notes, and so does the report."""
    with folder_lock(out_dir, "evaluation"):
        # staged files of a killed run
        remove_leftovers(Path(out_dir) / name for name in REPORT_FILES)
        return _evaluate(params_path, data_root, checkpoints, Path(out_dir))


def require_unchanged(checkpoints: str, prints: dict[str, str], out: Path) -> None:
    """Stop, writing no report, where a checkpoint changed since the run started: each
    dataset loads the networks again, so a training writing one meanwhile gave one report
    from two checkpoints under the first one's name. Its journal goes with it (clips scored
    from either are in it)."""
    now = checkpoint_fingerprints(checkpoints, STAGE_DIRS)
    changed = sorted(name for name in {*prints, *now} if prints.get(name) != now.get(name))
    if changed:
        remove_journal(out)
        paths = ", ".join(str(Path(checkpoints) / name / CHECKPOINT_NAME) for name in changed)
        raise EammError(
            f"{paths}: changed during the evaluation (a training writing it?); no report "
            "written: run it again once the training is done"
        )


def _evaluate(params_path: str, data_root: str, checkpoints: str, out: Path) -> dict:
    params = resolve_evaluate(params_path)
    missing = missing_judges(checkpoints)
    generate = load_section(params_path, "generate", GenerateParams)
    model = yaml.safe_load(Path(params_path).read_text()).get("model", {})
    prints = checkpoint_fingerprints(checkpoints, STAGE_DIRS)
    judges = judge_summary(Path(checkpoints), params.resolved().vshift)  # damaged: named now
    scores, stills, fid = [], {}, {}
    for dataset in params.datasets:
        clip_scores, clip_stills, fid[dataset] = evaluate_dataset(
            dataset, data_root, checkpoints, params, generate, model, prints, str(out)
        )
        scores += clip_scores
        stills.update(clip_stills)
    table = aggregate(scores)
    for dataset, values in fid.items():
        add_set_scores(table, dataset, "fid", values)
    shown = (STAGE_DIRS[stage] for stage in (*GENERATION_STAGES, *JUDGES))
    models = {name: prints[name] for name in shown if name in prints}  # the report's order
    manifests = [manifest_path(data_root, dataset) for dataset in params.datasets]
    protocol = run_protocol(params, generate, any(cap_cuts(m, params) for m in manifests))
    metrics = finite(  # as metrics.json holds it: null, not NaN
        {
            **table,
            "judges": without_missing_judges(judges, missing),
            "training": training_summary(Path(checkpoints)),
        }
    )
    require_unchanged(checkpoints, prints, out)
    clip_scores = [s.__dict__ for s in scores]
    notes = generation_notes(checkpoints, data_root)
    notes += [
        note
        for manifest in manifests
        for note in (short_clips_note(manifest, params.split), *source_notes(manifest, params))
        if note
    ]
    write_report(
        metrics, clip_scores, stills, protocol, models, out, Path(checkpoints), notes=notes
    )
    remove_journal(out)  # kept until now so that a killed run resumes where it was
    other_runs = [j["other_run"] for j in judges.values() if j.get("other_run")]
    for note in [*notes, *(missing_judge_note(s, p) for s, p in missing.items()), *other_runs]:
        print(f"note: {note}", file=sys.stderr)
    create_markdown_artifact(
        key="evaluation",
        markdown=markdown(metrics, protocol, models, notes=notes),
        description=f"Evaluation under protocol {params.protocol}",
    )
    return metrics
