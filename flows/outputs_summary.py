"""What `eamm summary` prints: a table of the pipeline's outputs (sample data, manifests,
checkpoints, generated videos, the report), each row read from the file the output leaves; a
damaged file is a note naming it and the rest of the table is still printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.table import Table

from eamm.errors import EammError
from eamm.runtime import project_root
from eamm.stages import DATASETS, manifest_path
from flows.preflight import require_dir


def outputs_table(root: Path | None) -> Table:
    """The outputs of the project (the folder holding dvc.yaml) the working folder is in;
    ``root`` is its data folder (default: ``data/`` there)."""
    project = project_root()
    require_dir("--root", root)  # a mistyped --root printed the other rows only
    root = root or project / "data"

    here = Path.cwd().resolve()

    def shown(path: Path) -> str:  # relative to the working folder where it is below it
        return str(path.relative_to(here) if path.is_relative_to(here) else path)

    table = Table(title="eamm outputs")
    table.add_column("output")
    table.add_column("where", overflow="fold")  # paths whole, folded at the width
    table.add_column("summary", overflow="fold")
    sample = root / "sample" / "summary.json"
    if sample.is_file():

        def sample_row(info: dict) -> tuple[str, ...]:
            parts = [
                f"{d}: {n} clips, {info['frames'][d]} frames, {info['seconds'][d]} s"
                for d, n in info["clips"].items()
            ]
            return "sample raw dataset", str(info["root"]), "; ".join(parts)

        summary_row(table, sample, sample_row)
    from eamm.manifest import read_rows, summarize

    for dataset in DATASETS:
        manifest = manifest_path(root, dataset)
        if manifest.is_file():
            try:
                info = summarize(read_rows(manifest))
            except EammError as err:  # one damaged manifest leaves the rest of the table
                print(f"note: {err}; left out of the summary", file=sys.stderr)
                continue
            status = ", ".join(f"{n} {k}" for k, n in info["by_status"].items())
            splits = ", ".join(f"{k} {n}" for k, n in info["by_split"].items())
            table.add_row(
                f"processed {dataset.upper()} + manifest",
                shown(manifest.parent),
                f"{status}; ok by split: {splits}; {info['frames']} frames at 25 fps",
            )
    from eamm.stages import STAGE_DIRS, checkpoint_path

    for name, stage in STAGE_DIRS.items():
        checkpoint = checkpoint_path(project / "models", name)
        metrics = checkpoint.with_name("metrics.json")
        if metrics.is_file():

            def stage_row(info: dict, name=name, stage=stage, checkpoint=checkpoint):
                heldout = ", ".join(
                    f"{k.removeprefix('heldout/')} {v:.3g}"
                    for k, v in info.items()
                    if k.startswith("heldout/") and isinstance(v, float)
                )
                files = {
                    "train_emotion_classifier": "loss.png, confusion.png",
                    "train_sync_expert": "loss.png, offsets.png",
                }.get(name, "loss.png, samples.png")
                return (
                    f"checkpoint {stage}",
                    shown(checkpoint),
                    f"step {shown_number(info.get('step'), 'd')}, "
                    f"loss {shown_number(info.get('loss/total'), '.4g')}; "
                    + (f"held out: {heldout}; " if heldout else "")
                    + files
                    + (
                        ""
                        if checkpoint.is_file()
                        else "; no checkpoint file: dvc pull, or dvc repro to train it"
                    )
                    + _other_run(checkpoint, info),
                )

            summary_row(table, metrics, stage_row)
    demo = project / "outputs" / "demo"
    if (demo / "emotion.mp4").is_file():
        table.add_row(
            "generated videos",
            shown(demo),
            "emotion.mp4, emotion_neutral.mp4, emotion_compare.mp4 (25 fps, audio)",
        )
    metrics_file = project / "reports" / "metrics.json"
    if metrics_file.is_file():
        from eamm.evidence import clip_scores_beside, count_line, relations
        from eamm.report import dataset_tables

        per_clip = clip_scores_beside(metrics_file)

        def report_row(table_data: dict) -> tuple[str, ...]:
            parts = [
                f"{d} {v}: PSNR {row['psnr']}, SSIM {row['ssim']}"
                for d, variants in dataset_tables(table_data).items()
                for v, row in variants.items()
                if v in ("reconstruction", "emotion")
            ]
            parts.append(f"relations: {count_line(relations(table_data, per_clip))}")
            return (
                "evaluation report",
                shown(metrics_file.with_name("evaluation.md")),
                "; ".join(parts),
            )

        summary_row(table, metrics_file, report_row)
    if not table.row_count:
        if not (project / "dvc.yaml").is_file():
            raise EammError(
                f"{Path.cwd()}: not in an eamm project (no dvc.yaml here or above); run it in "
                "the project folder or below it"
            )
        raise EammError(f"{root}: no pipeline outputs yet; run `make demo` (dvc repro)")
    return table


def _other_run(checkpoint: Path, info: dict) -> str:
    """A stage row's warning where its metrics.json is another run's than its checkpoint."""
    from eamm.evidence import metrics_mismatch

    try:
        other = metrics_mismatch(checkpoint, info)
    except EammError as err:  # a damaged checkpoint: said, the rest of the table printed
        return f"; its checkpoint cannot be read ({err})"
    return (
        "; these numbers are another run's than the checkpoint's (dvc checkout, or dvc repro)"
        if other
        else ""
    )


def shown_number(value: object, spec: str) -> str:
    """A summary's number, or "-" where the file has none (not 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return format(value, spec) if spec != "d" or isinstance(value, int) else str(value)


def summary_row(table: Table, path: Path, row) -> None:
    """Add ``row(info)`` for the JSON object in ``path``; a damaged file, or one without what
    the row shows, is a note naming it, and the rest of the table is still printed."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise TypeError(f"a JSON {type(info).__name__}, not an object")
        table.add_row(*row(info))
    except KeyError as err:
        print(f"note: {path}: no {err} in it; left out of the summary", file=sys.stderr)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, json.JSONDecodeError):
            reason = f"not JSON: {reason}"
        print(f"note: {path}: cannot be read ({reason}); left out of the summary", file=sys.stderr)
