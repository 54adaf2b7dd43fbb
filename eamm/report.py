"""The evaluation report: Markdown tables, a metrics plot and a contact sheet (PNG), readable
without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eamm.evaluate import METRICS

DIRECTION = {
    "psnr": "higher",
    "ssim": "higher",
    "m_lmd": "lower",
    "f_lmd": "lower",
    "cpbd": "higher",
    "emotion_acc": "higher",
    "sync_conf": "higher",
    "sync_dist": "lower",
    "syncnet_conf": "higher",
    "syncnet_dist": "lower",
}
VARIANTS = ("ground_truth", "neutral", "emotion")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def scored(table: dict, datasets: list[str]) -> list[str]:
    """The metrics with a value in some row of ``datasets`` (a judge without a checkpoint, or
    emotion accuracy on LRW, leaves a column empty: it is not shown)."""
    return [
        m
        for m in METRICS
        if any(row.get(m) is not None for d in datasets for row in table[d].values())
    ]


def markdown(table: dict, protocol: dict, models: dict) -> str:
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
    for dataset, variants in sorted(table.items()):
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
        "Ground truth: the real test clips scored by the same code (CPBD and the judges: "
        "emotion accuracy and lip sync; PSNR, SSIM and LMD would compare a clip with itself "
        "and are left out). Emotion accuracy: our MEAD classifier (`train_emotion_classifier`); "
        "sync_conf/sync_dist: our LRW sync expert (`train_sync_expert`); syncnet_*: SyncNet v2 "
        "from `evaluate.syncnet_weights` when set.",
        "",
        "![metrics](metrics.png)",
        "",
        "![contact sheet](contact_sheet.png)",
        "",
    ]
    return "\n".join(lines)


def plot_metrics(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(table)
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
                color=["#999999", "#4477aa", "#cc6677"][: len(names)],
            )
            ax.set_title(f"{dataset} {metric} ({DIRECTION[metric]} better)", fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contact_sheet(stills: dict, path: Path) -> None:
    """One row per emotion class (or dataset): source | ground truth | neutral | emotion."""
    import cv2
    from PIL import Image

    columns = ("source", "ground_truth", "neutral", "emotion")
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


def write_report(table: dict, stills: dict, protocol: dict, models: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_metrics(table, out_dir / "metrics.png")
    contact_sheet(stills, out_dir / "contact_sheet.png")
    report = out_dir / "evaluation.md"
    report.write_text(markdown(table, protocol, models))
    return report
