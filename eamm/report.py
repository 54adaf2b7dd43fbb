"""The evaluation report: Markdown tables (measured rows beside their baselines, the judges'
held-out numbers, every stage's loss before and after training, the relations a working
pipeline shows), a metrics plot and a contact sheet (PNG), readable without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eamm.evaluate import METRICS, VARIANTS
from eamm.evidence import relations

DIRECTION = {
    "psnr": "higher",
    "ssim": "higher",
    "m_lmd": "lower",
    "f_lmd": "lower",
    "kp_motion": "lower",
    "cpbd": "higher",
    "emotion_acc": "higher",
    "sync_conf": "higher",
    "sync_dist": "lower",
    "syncnet_conf": "higher",
    "syncnet_dist": "lower",
}
DATASETS = ("mead", "lrw")
COLOURS = ("#999999", "#ddaa33", "#228833", "#4477aa", "#cc6677")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def dataset_tables(metrics: dict) -> dict:
    """The per-dataset score tables of metrics.json (without the judges and training parts)."""
    return {d: metrics[d] for d in DATASETS if d in metrics}


def scored(table: dict, datasets: list[str]) -> list[str]:
    """The metrics with a value in some row of ``datasets`` (a judge without a checkpoint, or
    emotion accuracy on LRW, leaves a column empty: it is not shown)."""
    return [
        m
        for m in METRICS
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


def _judge_lines(judges: dict) -> list[str]:
    if not judges:
        return []
    classifier, expert = judges["emotion_classifier"], judges["sync_expert"]
    return [
        "## Judges (held-out)",
        "",
        "| judge | held-out metric | value | clips | chance |",
        "|---|---|---|---|---|",
        f"| emotion classifier (MEAD test speakers) | accuracy | "
        f"{_fmt(classifier['heldout_accuracy'])} | {classifier['heldout_clips']} | "
        f"{_fmt(classifier['chance'])} |",
        f"| sync expert (LRW val) | audio offset accuracy | "
        f"{_fmt(expert['heldout_offset_accuracy'])} | {expert['heldout_clips']} | "
        f"{_fmt(expert['chance'])} |",
        "",
    ]


def _relation_lines(metrics: dict) -> list[str]:
    lines = ["## What this run shows", "", "| relation | holds | values |", "|---|---|---|"]
    for r in relations(metrics):
        lines.append(f"| {r.claim} | {'yes' if r.holds else '**no**'} | {r.detail} |")
    return [*lines, ""]


def markdown(metrics: dict, protocol: dict, models: dict) -> str:
    table = dataset_tables(metrics)
    lines = [
        "# Evaluation report",
        "",
        "Protocol: docs/evaluation.md. Parameters:",
        "",
        "```json",
        json.dumps(protocol, indent=2),
        "```",
        "",
        f"Checkpoints: {json.dumps(models)}",
        "",
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
                cells = " | ".join(_fmt(row.get(m)) for m in shown)
                lines.append(f"| {variant} | {row['clips']} | {cells} |")
        lines.append("")
    lines += [
        "Rows: `ground_truth` is the real test clips scored by the same code (CPBD and the "
        "judges; PSNR, SSIM and LMD would compare a clip with itself and are left out). "
        "`static_source` repeats the source frame (the baseline of no motion at all). "
        "`reconstruction` is FOMM driven by the keypoints of the real frames (the first "
        "stage alone). `neutral` and `emotion` are generated from the audio (and, for "
        "`emotion`, the emotion source video). Emotion accuracy: our MEAD classifier "
        "(`train_emotion_classifier`); sync_conf/sync_dist: our LRW sync expert "
        "(`train_sync_expert`); syncnet_*: SyncNet v2 from `evaluate.syncnet_weights` when set.",
        "",
        *_relation_lines(metrics),
        *_judge_lines(metrics.get("judges", {})),
        *_training_lines(metrics.get("training", {})),
        "![metrics](metrics.png)",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    return "\n".join(lines)


def plot_metrics(metrics: dict, path: Path) -> None:
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
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet(stills: dict, path: Path) -> None:
    """One row per emotion class (or dataset): the source frame, then the middle frame of the
    ground truth, the FOMM reconstruction and the two generated variants."""
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
    Image.fromarray(np.concatenate([header, *rows], axis=0)).save(path)


def write_report(metrics: dict, stills: dict, protocol: dict, models: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_metrics(metrics, out_dir / "metrics.png")
    contact_sheet(stills, out_dir / "contact_sheet.png")
    report = out_dir / "evaluation.md"
    report.write_text(markdown(metrics, protocol, models))
    return report
