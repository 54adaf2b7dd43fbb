"""Where each training stage's checkpoint lives under the models folder (``<models>/<dir>``),
named once for training, generation, the judges and the report."""

from __future__ import annotations

STAGE_DIRS = {
    "train_fomm": "fomm",
    "train_a2fd": "a2fd",
    "finetune_a2fd": "a2fd_finetune",
    "train_emotion": "emotion",
    "train_emotion_classifier": "emotion_classifier",
    "train_sync_expert": "sync_expert",
}
