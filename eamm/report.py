"""The evaluation report: the protocol it ran, Markdown tables (measured rows beside their
baselines, the published MEAD numbers with their protocols, the judges' held-out numbers, every
stage's loss before and after training, the relations a working pipeline shows), a metrics plot
and a contact sheet (PNG), readable without running anything."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from eamm.atomic import replacing_all, write_bytes
from eamm.config import GENERATION_ONLY, EvaluateParams, GenerateParams
from eamm.errors import EammError
from eamm.evaluate import METRICS, SET_METRICS, VARIANTS
from eamm.evidence import relations
from eamm.judges.scoring import PIPELINE_JUDGES, missing_judge_note
from eamm.stages import CONFUSION_PNG, OFFSETS_PNG, STAGE_DIRS
from eamm.strict_json import json_text

PUBLISHED = Path(__file__).resolve().parent / "metrics" / "published_mead.yaml"
# What no protocol setting changes: the audio each judge and the generator read.
AUDIO_FEATURES = {
    "generator_and_sync_expert": "EAMM's MFCC windows of the clip (mfcc.npy, 28 rows a frame)",
    "syncnet": "python_speech_features MFCC (13 coefficients, 100 rows/s) of the 16 kHz audio "
    "at int16 scale",
}

DIRECTION = {
    "psnr": "higher",
    "ssim": "higher",
    "m_lmd": "lower",
    "m_lmd_shape": "lower",
    "f_lmd": "lower",
    "kp_motion": "lower",
    "emotion_kp": "lower",
    "emotion_kp_from_neutral": "lower",
    "stage3_emotion_acc": "higher",
    "cpbd": "higher",
    "emotion_acc": "higher",
    "sync_conf": "higher",
    "sync_dist": "lower",
    "syncnet_conf": "higher",
    "syncnet_dist": "lower",
    "fid": "lower",  # measured with evaluate.fid_weights
    # published only (not measured here)
    "style_acc": "higher",
    "csim": "higher",
    "fvd": "lower",
}
PUBLISHED_METRICS = (
    "psnr",
    "ssim",
    "cpbd",
    "m_lmd",
    "f_lmd",
    "syncnet_conf",
    "emotion_acc",
    "style_acc",
    "csim",
    "fid",
    "fvd",
)
DATASETS = ("mead", "lrw")
# The judges' held-out figures (eamm.judges.plots), copied from their stage folders into the
# report's: name in the report folder -> (caption, judge stage, name in the stage folder).
JUDGE_FIGURES = {
    "judge_confusion.png": (
        "emotion classifier: held-out confusion matrix",
        "train_emotion_classifier",
        CONFUSION_PNG,
    ),
    "judge_offsets.png": (
        "sync expert: held-out offsets found",
        "train_sync_expert",
        OFFSETS_PNG,
    ),
}
COLOURS = ("#999999", "#ddaa33", "#228833", "#88ccee", "#4477aa", "#cc6677")  # per VARIANTS
# Every file the evaluation writes into its report folder (dvc.yaml's evaluate outs), in the
# order they are staged: they are replaced as one set (``replace_report``), the Markdown last.
REPORT_FILES = (
    "metrics.json",
    "clip_scores.json",
    "metrics.png",
    "contact_sheet.png",
    *JUDGE_FIGURES,
    "evaluation.md",
)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cell(row: dict, metric: str) -> str:
    """A mean, with how many of the row's clips it is over where some clips had no value."""
    counted = row.get(f"{metric}_clips")
    value = _fmt(row.get(metric))
    return value if counted is None else f"{value} ({counted} of {row['clips']} clips)"


def dataset_tables(metrics: dict) -> dict:
    """The per-dataset score tables of metrics.json (without the judges and training parts)."""
    return {d: metrics[d] for d in DATASETS if d in metrics}


def scored(table: dict, datasets: list[str]) -> list[str]:
    """The metrics with a value in some row of ``datasets`` (a judge without a checkpoint, or
    emotion accuracy on LRW, leaves a column empty: it is not shown)."""
    return [
        m
        for m in (*METRICS, *SET_METRICS)
        if any(row.get(m) is not None for d in datasets for row in table[d].values())
    ]


def _training_lines(training: dict) -> list[str]:
    if not training:
        return []
    lines = [
        "## Training",
        "",
        "Mean total loss over the first and the last tenth of each stage's steps "
        "(from the checkpoint's history).",
        "",
        "| stage | steps | loss, first 10 % | loss, last 10 % | perceptual VGG19 |",
        "|---|---|---|---|---|",
    ]
    for stage, row in training.items():
        lines.append(
            f"| {stage} | {row['steps']} | {_fmt(row['loss_first'])} | "
            f"{_fmt(row['loss_last'])} | {row.get('perceptual_vgg', '-')} |"
        )
    standin = [s for s, r in training.items() if "stand-in" in str(r.get("perceptual_vgg", ""))]
    if standin:
        lines += [
            "",
            f"**Stand-in VGG19**: {', '.join(standin)} trained with a randomly initialised "
            "VGG19 in the perceptual loss (the demo profile, offline); EAMM's loss uses "
            "ImageNet weights (`model.perceptual.vgg_weights`).",
        ]
    return [*lines, ""]


def judge_figures(checkpoints: Path) -> dict[str, Path]:
    """The judge stages' figures there are: name in the report folder -> the stage's file."""
    found = {
        name: Path(checkpoints) / STAGE_DIRS[stage] / source
        for name, (_, stage, source) in JUDGE_FIGURES.items()
    }
    return {name: path for name, path in found.items() if path.is_file()}


def copy_judge_figures(checkpoints: Path, out_dir: Path) -> list[str]:
    """Copy the judge stages' figures into the report folder; returns the names copied. A
    figure its stage lacks is not shown (and an old copy of it is removed)."""
    figures = judge_figures(checkpoints)
    for name in JUDGE_FIGURES:
        if name in figures:
            write_bytes(out_dir / name, figures[name].read_bytes())
        else:
            (out_dir / name).unlink(missing_ok=True)
    return list(figures)


def _judge_lines(judges: dict, figures: Sequence[str] = ()) -> list[str]:
    """The judges' held-out table and figures; a judge without a checkpoint (its
    ``missing_checkpoint``) has no value, and a line under the table says which columns of the
    tables above it left empty."""
    if not judges:
        return []
    shown = [f"![{JUDGE_FIGURES[name][0]}]({name})" for name in JUDGE_FIGURES if name in figures]
    classifier, expert = judges["emotion_classifier"], judges["sync_expert"]

    def value(judge: dict, key: str) -> str:
        if judge.get("missing_checkpoint"):
            return "not used (no checkpoint)"
        return (
            "unknown (another run's metrics.json)" if judge.get("other_run") else _fmt(judge[key])
        )

    def clips(judge: dict) -> str:
        return "-" if judge.get("heldout_clips") is None else str(judge["heldout_clips"])

    unused = {s: judges[STAGE_DIRS[s]].get("missing_checkpoint") for s in PIPELINE_JUDGES}
    missing = [f"**Not used**: {missing_judge_note(s, p)}." for s, p in unused.items() if p]
    missing += [
        f"**Not its run**: {judge['other_run']}: its held-out numbers and figure are left out."
        for judge in (classifier, expert)
        if judge.get("other_run")
    ]
    return [
        "## Judges (held-out)",
        "",
        "| judge | held-out metric | value | clips | chance |",
        "|---|---|---|---|---|",
        f"| emotion classifier (MEAD test speakers) | accuracy | "
        f"{value(classifier, 'heldout_accuracy')} | {clips(classifier)} | "
        f"{_fmt(classifier['chance'])} |",
        f"| sync expert (LRW val) | audio offset accuracy | "
        f"{value(expert, 'heldout_offset_accuracy')} | {clips(expert)} | "
        f"{_fmt(expert['chance'])} |",
        "",
        *[line for note in missing for line in (note, "")],
        *[line for figure in shown for line in (figure, "")],
    ]


def without_missing_judges(judges: dict, missing: Mapping[str, Path]) -> dict:
    """``judges`` (``eamm.evidence.judge_summary``) with the held-out numbers of each judge
    without a checkpoint (``missing``: stage -> the file looked for) left out: its stage
    folder's metrics.json describes a network this evaluation did not use. The file is kept
    as ``missing_checkpoint``, for the report to say so."""
    out = dict(judges)
    for stage, path in missing.items():
        name = STAGE_DIRS[stage]
        kept = {"chance": judges[name]["chance"]} if "chance" in judges.get(name, {}) else {}
        out[name] = {key: None for key in judges.get(name, {})} | kept
        out[name]["missing_checkpoint"] = str(path)
    return out


def run_protocol(params: EvaluateParams, generate: GenerateParams, cut: bool | None = None) -> dict:
    """Everything the run followed: the resolved protocol (its name, every setting, the caps
    that cut it, the audio features no setting changes) and the evaluate and generate params
    (those the evaluation reads: not ``GENERATION_ONLY``).
    ``cut``: whether the caps left out a clip or frame (``eamm.evaluate.cap_cuts``; None: a
    cap counts as cutting)."""
    resolved = params.resolved()
    evaluate = params.model_dump(exclude={"protocols", "protocol"})
    evaluate["protocols_defined"] = sorted(params.protocols)
    return {
        "protocol": {
            "name": params.protocol,
            **resolved.model_dump(),
            "capped": params.capped if cut is None else cut,
            "audio_features": AUDIO_FEATURES,
        },
        "evaluate": evaluate,
        "generate": generate.model_dump(exclude=set(GENERATION_ONLY)),
    }


def load_published(path: Path = PUBLISHED) -> dict:
    """The published MEAD rows (``eamm/metrics/published_mead.yaml``)."""
    return yaml.safe_load(path.read_text())


def _protocol_lines(protocol: dict) -> list[str]:
    run = protocol.get("protocol")
    if not run:
        return ["Protocol: docs/evaluation.md. Parameters:", ""]
    lines = [
        f"Protocol **`{run['name']}`** (`evaluate.protocol`, defined under "
        "`evaluate.protocols` in params.yaml; docs/evaluation.md describes each setting):",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key, value in run.items():
        if key in ("name", "capped", "audio_features"):
            continue
        if value is None:
            shown = "all" if key != "mead_speakers" else "all of the split"
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        lines.append(f"| {key} | {shown} |")
    for judge, features in run.get("audio_features", {}).items():
        lines.append(f"| audio: {judge} | {features} |")
    lines.append("")
    if run.get("capped"):
        lines += [
            "**Capped for a quick check** (`evaluate.max_clips` / `evaluate.max_frames`, or the "
            f"recipe's `evaluate`, as in the demo): "
            f"fewer clips or frames than protocol `{run['name']}` takes, so these numbers are "
            "not the protocol's.",
            "",
        ]
    return [*lines, "Parameters:", ""]


def _published_lines(published: dict, run: dict | None, clips: int | None) -> list[str]:
    """The published MEAD rows under the measured ones: source, protocol, whether a later paper
    re-ran the method, which of them share this run's protocol, and how far the same method's
    number moves between protocols."""
    rows = published.get("rows", [])
    if not rows:
        return []
    shown = [m for m in PUBLISHED_METRICS if any(m in r["metrics"] for r in rows)]
    name = run["name"] if run else None
    lines = [
        "### Published MEAD numbers (not measured here)",
        "",
        "| method | source | protocol | re-reported by a later paper | "
        + " | ".join(f"{m} ({DIRECTION[m]} is better)" for m in shown)
        + " |",
        "|" + "---|" * (len(shown) + 4),
    ]
    for r in rows:
        cells = " | ".join(_fmt(r["metrics"].get(m)) for m in shown)
        again = "yes" if r.get("re_reported") else "no"
        lines.append(f"| {r['method']} | {r['source']} | {r['protocol']} | {again} | {cells} |")
    lines += ["", "Protocols of the published rows:", ""]
    lines += [f"- `{key}`: {text}" for key, text in published.get("protocols", {}).items()]
    same = [r for r in rows if r["protocol"] == name]
    lines.append("")
    if same:
        methods = ", ".join(f"{r['method']} ({r['source']})" for r in same)
        capped = " This run is capped, so not the whole protocol." if run.get("capped") else ""
        lines.append(
            f"This run's MEAD rows are under protocol `{name}` ({clips} clips), the protocol "
            f"of: {methods}; the differences the protocol's note gives remain.{capped}"
        )
    elif name is not None:
        lines.append(
            f"This run's MEAD rows are under protocol `{name}`: no published row is; they compare "
            "with this project's other runs under the same protocol "
            "(`dvc exp run -S evaluate.protocol=eat` scores under EAT's)."
        )
    moves = _protocol_moves(rows)
    if moves:
        lines += ["", "The same method's published number under different protocols:", ""]
        lines += [f"- {m}" for m in moves]
    lines += ["", *[f"- {note}" for note in published.get("not_found", [])], ""]
    return lines


def _protocol_moves(rows: list[dict]) -> list[str]:
    """Per method and metric published under two or more protocols: the values by protocol."""
    out = []
    methods = dict.fromkeys(r["method"] for r in rows)
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        for metric in PUBLISHED_METRICS:
            values = {r["protocol"]: r["metrics"][metric] for r in mine if metric in r["metrics"]}
            if len(values) > 1:
                parts = ", ".join(f"{_fmt(v)} (`{p}`)" for p, v in values.items())
                out.append(f"{method} {metric}: {parts}")
    return out


def _relation_lines(metrics: dict, clip_scores: Sequence[dict] | None) -> list[str]:
    lines = ["## What this run shows", "", "| relation | holds | values |", "|---|---|---|"]
    for r in relations(metrics, clip_scores):
        lines.append(f"| {r.claim} | {r.verdict} | {r.detail} |")
    return [*lines, ""]


def markdown(
    metrics: dict,
    protocol: dict,
    models: dict,
    published: dict | None = None,
    judge_figures: Sequence[str] = (),
    notes: Sequence[str] = (),
    clip_scores: Sequence[dict] | None = None,
) -> str:
    """``notes``: what the scores are of where the checkpoint folder lacks a stage;
    ``clip_scores``: the per-clip rows, to compare means over different clips pairwise."""
    table = dataset_tables(metrics)
    published = load_published() if published is None else published
    lines = [
        "# Evaluation report",
        "",
        *_protocol_lines(protocol),
        "```json",
        json_text(protocol, indent=2),
        "```",
        "",
        f"Checkpoints: {json_text(models)}",
        "",
        *[line for note in notes for line in (f"**Note**: {note}.", "")],
    ]
    for dataset, variants in table.items():
        shown = scored(table, [dataset])
        header = (
            "| variant | clips | "
            + " | ".join(f"{m} ({DIRECTION[m]} is better)" for m in shown)
            + " |"
        )
        lines += [f"## {dataset.upper()}", "", header, "|" + "---|" * (len(shown) + 2)]
        for variant in VARIANTS:
            if variant in variants:
                row = variants[variant]
                cells = " | ".join(_cell(row, m) for m in shown)
                lines.append(f"| {variant} | {row['clips']} | {cells} |")
        lines.append("")
        if dataset == "mead":
            clips = variants.get("ground_truth", {}).get("clips")
            lines += _published_lines(published, protocol.get("protocol"), clips)
    lines += [
        "Rows: `ground_truth` is the real test clips scored by the same code (CPBD and the "
        "judges; PSNR, SSIM and LMD would compare a clip with itself and are left out). "
        "`static_source` repeats the source frame (the baseline of no motion at all). "
        "`reconstruction` is FOMM driven by the keypoints of the real frames (the first "
        "stage alone). `neutral` and `emotion` are generated from the audio (and, for "
        "`emotion`, the emotion source video); `stage1` is `neutral` with stage 1's audio "
        "network, before stage 2 fine-tuned it through the renderer. PSNR, SSIM and LMD are "
        "taken on the protocol's crops with its landmarker (`image_crop`, `landmarker`); "
        "m_lmd_shape is M-LMD with each frame's mouth points centred on their mean (the "
        "mouth's shape, blind to where the head is). Emotion accuracy: our MEAD classifier "
        "(`train_emotion_classifier`); sync_conf/sync_dist: our LRW sync expert "
        "(`train_sync_expert`); syncnet_*: SyncNet v2 from `evaluate.syncnet_weights` when set; "
        "fid: pytorch-fid's Inception from `evaluate.fid_weights` when set, each variant's "
        "frames (all clips at once, the protocol's crops) against the real frames.",
        "",
        *_relation_lines(metrics, clip_scores),
        *_judge_lines(metrics.get("judges", {}), judge_figures),
        *_training_lines(metrics.get("training", {})),
        "![metrics](metrics.png)",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    return "\n".join(lines)


def metrics_png(metrics: dict) -> bytes:
    """The bar charts of every scored metric, per dataset and variant (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = dataset_tables(metrics)
    datasets = list(table)
    shown = scored(table, datasets)
    fig, axes = plt.subplots(
        len(datasets), len(shown), figsize=(3 * len(shown), 2.6 * len(datasets)), squeeze=False
    )
    for r, dataset in enumerate(datasets):
        for c, metric in enumerate(shown):
            ax = axes[r][c]
            names = [v for v in VARIANTS if v in table[dataset]]
            values = [table[dataset][v].get(metric) for v in names]
            ax.bar(
                names,
                [np.nan if v is None else v for v in values],
                color=[COLOURS[VARIANTS.index(v)] for v in names],
            )
            ax.set_title(f"{dataset} {metric} ({DIRECTION[metric]} better)", fontsize=9)
            ax.tick_params(axis="x", labelsize=6, rotation=30)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=90, format="png")
    plt.close(fig)
    return png.getvalue()


def contact_sheet_png(stills: dict) -> bytes:
    """One row per emotion class (or dataset): the source frame, then the middle frame of the
    ground truth, the FOMM reconstruction and the two generated variants (PNG)."""
    import cv2
    from PIL import Image

    columns = ("source", "ground_truth", "reconstruction", "neutral", "emotion")
    rows = []
    for name in sorted(stills):
        tiles = []
        for col in columns:
            tile = stills[name].get(col)
            if tile is None:
                tile = np.zeros_like(stills[name]["source"])
            tile = cv2.resize(tile, (128, 128), interpolation=cv2.INTER_NEAREST)
            tiles.append(tile)
        label = np.full((128, 110, 3), 255, np.uint8)
        cv2.putText(label, name[:12], (4, 68), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        rows.append(np.concatenate([label, *tiles], axis=1))
    header = np.full((24, rows[0].shape[1], 3), 255, np.uint8)
    for i, col in enumerate(columns):
        cv2.putText(header, col, (114 + 128 * i, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1)
    png = io.BytesIO()
    Image.fromarray(np.concatenate([header, *rows], axis=0)).save(png, format="PNG")
    return png.getvalue()


class ReportWriteError(EammError, OSError):
    """A report file could not be written (full disk, I/O error); the previous report is
    intact. An ``OSError`` too, for callers that catch those."""


def replace_report(out_dir: Path, files: Mapping[str, bytes], remove: Sequence[str] = ()) -> None:
    """``files`` (name -> bytes) in ``out_dir`` as one set: each is staged beside its final
    name, then all are flushed and renamed together (``eamm.atomic.replacing_all``), and only
    then the ``remove`` names (files of an earlier report this one has not) are deleted. A full
    disk or any other write error leaves every file of the previous report as it was, no staged
    file behind, and is one line naming the file being written and the reason."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in files}
    writing = out_dir
    try:
        with replacing_all(paths) as staged:
            for name, data in files.items():
                writing = paths[name]
                staged[name].write_bytes(data)
            writing = out_dir
        for name in remove:
            writing = out_dir / name
            writing.unlink(missing_ok=True)
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        if writing == out_dir:  # flushing or renaming the staged files
            raise ReportWriteError(f"{out_dir}: cannot replace the report: {reason}") from err
        if writing.name in remove:
            raise ReportWriteError(f"{writing}: cannot remove an old figure: {reason}") from err
        kept = (
            f"the previous report in {out_dir} is kept"
            if any(path.exists() for path in paths.values())
            else "nothing was written"
        )
        raise ReportWriteError(f"{writing}: cannot write the report: {reason} ({kept})") from err


def write_report(
    metrics: dict,
    clip_scores: list[dict],
    stills: dict,
    protocol: dict,
    models: dict,
    out_dir: Path,
    checkpoints: Path | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """The report in ``out_dir``: ``metrics.json``, the per-clip ``clip_scores.json`` (strict
    JSON, null for no value), the plots, the judges' figures from ``checkpoints`` when given
    (not of a judge ``without_missing_judges`` marked missing) and ``evaluation.md``, replaced
    together (``replace_report``): all from this run, or, if writing fails, all as before."""
    judges = metrics.get("judges", {})
    figures = {
        name: path
        for name, path in (judge_figures(checkpoints) if checkpoints is not None else {}).items()
        if not {"missing_checkpoint", "other_run"}
        & set(judges.get(STAGE_DIRS[JUDGE_FIGURES[name][1]], {}))
    }
    files = {
        "metrics.json": json_text(metrics, indent=2) + "\n",
        "clip_scores.json": json_text(clip_scores, indent=1),
        "metrics.png": metrics_png(metrics),
        "contact_sheet.png": contact_sheet_png(stills),
        **{name: path.read_bytes() for name, path in figures.items()},
        "evaluation.md": markdown(
            metrics,
            protocol,
            models,
            judge_figures=list(figures),
            notes=notes,
            clip_scores=clip_scores,
        ),
    }
    encoded = {
        name: data.encode() if isinstance(data, str) else data for name, data in files.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    replace_report(out_dir, encoded, remove=[name for name in JUDGE_FIGURES if name not in files])
    return out_dir / "evaluation.md"
