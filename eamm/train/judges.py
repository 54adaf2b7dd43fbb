"""The evaluation judges' training stages: the MEAD emotion classifier and the LRW sync expert.

They are trained and versioned by the pipeline (DVC stages ``train_emotion_classifier`` and
``train_sync_expert``) so emotion accuracy and a lip-sync score exist offline; each reports its
own held-out numbers after training (``validate``), written into the stage's metrics.json.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from eamm.config import MEAD_EMOTIONS
from eamm.metrics.emotion import emotion_accuracy, predict_emotion, spread
from eamm.metrics.sync import expert_score, shift_audio
from eamm.models.emotion_classifier import EmotionClassifier
from eamm.models.sync_expert import SyncExpert, mouth_half
from eamm.train.clips import Clip
from eamm.train.datasets import to_tensor

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
    """Held-out accuracy of the classifier on whole clips (evenly spread frames)."""

    def validate(device: torch.device) -> dict:
        if not clips:
            return {"heldout/clips": 0}
        net.eval()
        predicted = [
            predict_emotion(
                net, _clip_frames(c, size, spread(c.num_frames, VALIDATION_FRAMES), device)
            )
            for c in clips
        ]
        intended = [c.emotion or "neutral" for c in clips]
        return {
            "heldout/clips": len(clips),
            "heldout/accuracy": emotion_accuracy(predicted, intended),
        }

    return validate


def validate_sync(net: SyncExpert, clips: list[Clip], size: int, vshift: int):
    """Held-out sync: share of clips whose found offset is 0 (within one frame) with their own
    audio, and -VALIDATION_SHIFT (within one frame) with the audio delayed by that much; mean
    confidence of both cases."""

    def validate(device: torch.device) -> dict:
        if not clips:
            return {"heldout/clips": 0}
        net.eval()
        hits, shifted_hits, conf, shifted_conf = [], [], [], []
        for clip in clips:
            mfcc = clip.array("mfcc.npy")[: clip.num_frames, :, 1:]
            frames = _clip_frames(clip, size, list(range(min(clip.num_frames, len(mfcc)))), device)
            for audio, target, found, confs in (
                (mfcc, 0, hits, conf),
                (
                    shift_audio(mfcc, VALIDATION_SHIFT),
                    -VALIDATION_SHIFT,
                    shifted_hits,
                    shifted_conf,
                ),
            ):
                score = expert_score(net, frames, torch.from_numpy(audio).to(device), vshift)
                if score is not None:
                    found.append(abs(score.offset - target) <= 1)
                    confs.append(score.confidence)
        return {
            "heldout/clips": len(clips),
            "heldout/offset_accuracy": float(np.mean(hits)) if hits else None,
            "heldout/shifted_offset_accuracy": (
                float(np.mean(shifted_hits)) if shifted_hits else None
            ),
            "heldout/confidence": float(np.mean(conf)) if conf else None,
            "heldout/shifted_confidence": float(np.mean(shifted_conf)) if shifted_conf else None,
        }

    return validate
