"""The judges' held-out quality as figures: the emotion classifier's confusion matrix and the sync
expert's histogram of found offsets. Written by the judge stages beside their metrics.json and
copied into the evaluation report.

The PNGs are byte-identical run to run for the same numbers: a fixed size and dpi, the Agg
renderer and no ``Software`` (matplotlib version) or date in the PNG metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eamm.atomic import replacing
from eamm.config import MEAD_EMOTIONS

CONFUSION_SIZE = (6.4, 5.6)  # inches, at DPI: 640 x 560 pixels
OFFSETS_SIZE = (7.0, 4.0)  # 700 x 400 pixels
DPI = 100
PNG_METADATA = {"Software": None}  # no matplotlib version in the file


def confusion_matrix(
    predicted: Sequence[str], intended: Sequence[str], classes: Sequence[str] = MEAD_EMOTIONS
) -> np.ndarray:
    """Clip counts (len(classes), len(classes)): row = intended emotion, column = predicted."""
    if len(predicted) != len(intended):
        raise ValueError(f"{len(predicted)} predictions for {len(intended)} labels")
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for p, t in zip(predicted, intended, strict=True):
        counts[index[t], index[p]] += 1
    return counts


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", metadata=PNG_METADATA)
    return path


def plot_confusion(
    counts: np.ndarray, path: str | Path, classes: Sequence[str] = MEAD_EMOTIONS
) -> Path:
    """The confusion matrix: each cell's clip count, shaded by its share of the row (the
    intended emotion), with the accuracy and the number of clips in the title."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig = _figure(CONFUSION_SIZE)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for (r, c), n in np.ndenumerate(counts):
        colour = "white" if shares[r, c] > 0.5 else "black"
        ax.text(c, r, str(n), ha="center", va="center", color=colour, fontsize=9)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("intended")
    if total:
        accuracy = np.trace(counts) / total
        title = f"emotion classifier, held out: accuracy {accuracy:.3f} on {total} clips"
    else:
        title = "emotion classifier: no held-out clips"
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label="share of the intended emotion's clips")
    fig.tight_layout()
    return _save(fig, path)


def offset_accuracy(found: Sequence[int], expected: int) -> float | None:
    """Share of found offsets within one frame of ``expected`` (None for no offsets): the sync
    expert's held-out accuracy."""
    return float(np.mean([abs(f - expected) <= 1 for f in found])) if found else None


def plot_offsets(
    own: Sequence[int], delayed: Sequence[int], vshift: int, shift: int, path: str | Path
) -> Path:
    """Histogram of the offsets the search found per held-out clip, with the clip's own audio
    (expected 0) and with the audio delayed by ``shift`` frames (expected -shift); the expected
    offsets and the one-frame band counted as a hit are marked, the accuracies are in the
    title."""
    from matplotlib.ticker import MaxNLocator

    offsets = np.arange(-vshift, vshift + 1)
    fig = _figure(OFFSETS_SIZE)
    ax = fig.add_subplot()
    series = (
        (own, 0, "own audio", "#4477aa", -0.2),
        (delayed, -shift, f"audio delayed {shift} frames", "#cc6677", 0.2),
    )
    parts, peak = [], 1
    for found, expected, label, colour, dx in series:
        counts = [int(np.sum(np.asarray(found) == o)) for o in offsets]
        peak = max(peak, *counts)
        ax.axvspan(expected - 1.5, expected + 1.5, color=colour, alpha=0.08, linewidth=0)
        ax.bar(offsets + dx, counts, width=0.4, color=colour, label=f"{label} ({len(found)})")
        ax.axvline(expected, color=colour, linestyle="--", linewidth=1, zorder=3)
        accuracy = offset_accuracy(found, expected)
        shown = "-" if accuracy is None else f"{accuracy:.3f}"
        parts.append(f"{label}: {shown} (expected {expected})")
    ax.set_xlim(-vshift - 0.7, vshift + 0.7)
    ax.set_ylim(0, 1.15 * peak)  # room for the legend
    ax.set_xlabel("found offset (frames; delayed audio gives a negative offset)")
    ax.set_ylabel("held-out clips")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(
        "sync expert, held out: found offsets (dashed: expected; shaded: within one frame)\n"
        "accuracy " + "; ".join(parts),
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)
