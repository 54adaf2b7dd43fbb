"""The evaluation judges' training stages: the MEAD emotion classifier and the LRW sync expert.

They are trained and versioned by the pipeline (DVC stages ``train_emotion_classifier`` and
``train_sync_expert``) so emotion accuracy and a lip-sync score exist offline; each reports its
own held-out numbers after training (``validate``), written into the stage's metrics.json,
and draws them beside it (``confusion.png``, ``offsets.png``; see :mod:`eamm.judges.plots`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from eamm.clips import Clip
from eamm.config import MEAD_EMOTIONS
from eamm.judges.emotion import emotion_accuracy, predict_emotion, spread
from eamm.judges.emotion_classifier import EmotionClassifier
from eamm.judges.plots import (
    confusion_matrix,
    offset_accuracy,
    plot_confusion,
    plot_offsets,
)
from eamm.judges.sync import expert_score, shift_audio
from eamm.judges.sync_expert import SyncExpert, mouth_half
from eamm.stages import CONFUSION_PNG, OFFSETS_PNG
from eamm.tensors import to_tensor

VALIDATION_FRAMES = 16  # frames per held-out clip, spread evenly over it
VALIDATION_SHIFT = 5  # frames the held-out audio is delayed by for the shifted check


def class_weights(labels: list[int], num_classes: int = len(MEAD_EMOTIONS)) -> torch.Tensor:
    """Inverse class frequencies (mean 1 over the classes present): MEAD has one neutral level
    against three of every other emotion, and an unweighted judge learns to avoid neutral."""
    counts = torch.bincount(torch.tensor(labels), minlength=num_classes).float()
    weights = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), torch.zeros(()))
    return weights / weights[counts > 0].mean()


def classifier_losses(net: EmotionClassifier, weights: dict, balance: torch.Tensor | None = None):
    """Cross-entropy of the clip's emotion, weighted per class by ``balance`` when given."""

    def loss_fn(batch: dict, step: int):
        logits = net(batch["frames"])
        per_class = None if balance is None else balance.to(logits.device)
        loss = F.cross_entropy(logits.float(), batch["emotion"], weight=per_class)
        return {"classify": weights.get("classify", 1.0) * loss}, None

    return loss_fn


def sync_losses(net: SyncExpert, weights: dict):
    """Binary cross-entropy of the in-sync logit (scaled cosine similarity) against the label."""

    def loss_fn(batch: dict, step: int):
        logit = net(mouth_half(batch["frames"]), batch["audio"])
        loss = F.binary_cross_entropy_with_logits(logit.float(), batch["label"].float())
        return {"sync": weights.get("sync", 1.0) * loss}, None

    return loss_fn


def _clip_frames(clip: Clip, size: int, indices: list[int], device: torch.device):
    return to_tensor(clip.frames(indices, size)).to(device)


def validate_classifier(net: EmotionClassifier, clips: list[Clip], size: int):
    """Held-out accuracy of the classifier on whole clips (evenly spread frames) and its
    confusion matrix (rows: intended emotion, columns: predicted, in ``MEAD_EMOTIONS`` order),
    also drawn as ``confusion.png`` in ``out`` when given."""

    def validate(device: torch.device, out: Path | None = None) -> dict:
        net.eval()
        predicted = [
            predict_emotion(
                net, _clip_frames(c, size, spread(c.num_frames, VALIDATION_FRAMES), device)
            )
            for c in clips
        ]
        intended = [c.emotion or "neutral" for c in clips]
        counts = confusion_matrix(predicted, intended)
        if out is not None:
            plot_confusion(counts, Path(out) / CONFUSION_PNG)
        if not clips:
            return {"heldout/clips": 0}
        return {
            "heldout/clips": len(clips),
            "heldout/accuracy": emotion_accuracy(predicted, intended),
            "heldout/confusion": counts.tolist(),
        }

    return validate


def validate_sync(net: SyncExpert, clips: list[Clip], size: int, vshift: int):
    """Held-out sync: share of clips whose found offset is 0 (within one frame) with their own
    audio, and -VALIDATION_SHIFT (within one frame) with the audio delayed by that much; mean
    confidence of both cases. The found offsets are drawn as a histogram, ``offsets.png`` in
    ``out`` when given."""

    def validate(device: torch.device, out: Path | None = None) -> dict:
        net.eval()
        found = {0: [], -VALIDATION_SHIFT: []}  # expected offset -> offsets found per clip
        conf = {0: [], -VALIDATION_SHIFT: []}
        for clip in clips:
            mfcc = clip.array("mfcc.npy")[: clip.num_frames, :, 1:]
            frames = _clip_frames(clip, size, list(range(min(clip.num_frames, len(mfcc)))), device)
            for audio, target in (
                (mfcc, 0),
                (shift_audio(mfcc, VALIDATION_SHIFT), -VALIDATION_SHIFT),
            ):
                score = expert_score(net, frames, torch.from_numpy(audio).to(device), vshift)
                if score is not None:
                    found[target].append(score.offset)
                    conf[target].append(score.confidence)
        own, delayed = found[0], found[-VALIDATION_SHIFT]
        if out is not None:
            plot_offsets(own, delayed, vshift, VALIDATION_SHIFT, Path(out) / OFFSETS_PNG)
        if not clips:
            return {"heldout/clips": 0}
        return {
            "heldout/clips": len(clips),
            "heldout/offset_accuracy": offset_accuracy(own, 0),
            "heldout/shifted_offset_accuracy": offset_accuracy(delayed, -VALIDATION_SHIFT),
            "heldout/confidence": _mean(conf[0]),
            "heldout/shifted_confidence": _mean(conf[-VALIDATION_SHIFT]),
        }

    return validate


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
