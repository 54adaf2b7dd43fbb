"""Emotion accuracy: the share of clips our MEAD classifier assigns to the intended emotion."""

from __future__ import annotations

import numpy as np
import torch

from eamm.config import MEAD_EMOTIONS
from eamm.judges.emotion_classifier import EmotionClassifier


def spread(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over a clip (all frames when it is shorter)."""
    if num_frames <= count:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, count).round().astype(int).tolist()


@torch.no_grad()
def predict_emotion(classifier: EmotionClassifier, frames: torch.Tensor) -> str:
    """The emotion of a clip (T, 3, H, W) in [0, 1]: mean of the per-frame logits."""
    logits = classifier(frames[None])
    return MEAD_EMOTIONS[int(logits.argmax(dim=-1))]


def emotion_accuracy(predicted: list[str], intended: list[str]) -> float:
    """Share of clips whose predicted emotion is the intended one (NaN for no clips)."""
    if len(predicted) != len(intended):
        raise ValueError(f"{len(predicted)} predictions for {len(intended)} labels")
    if not predicted:
        return float("nan")
    return float(np.mean([p == t for p, t in zip(predicted, intended, strict=True)]))
