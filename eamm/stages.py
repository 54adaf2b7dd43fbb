"""The training stages, declared once: name (the DVC stage, its params section and the
``eamm train`` argument), checkpoint folder under the models root, the stages whose checkpoints
it starts from, whether its loss has the VGG19 perceptual term, and the factory that builds its
networks, dataset and loss. Training, generation, the judges, the report, the flows and the
benchmarks read names, folders and wiring from here; adding a stage is one factory plus one
declaration. Nothing here imports training (inference reads the folders too).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class TrainingStage:
    name: str
    folder: str
    # ``module:function`` taking a ``eamm.train.build.StageInputs``, returning a ``Stage``
    factory: str
    upstream: tuple[str, ...] = ()  # stage names whose checkpoints it loads
    perceptual: bool = False  # its loss has the VGG19 perceptual term
    judge: bool = False  # an evaluation judge (ours): no recipe sets it

    def build(self, inputs: Any) -> Any:
        """The stage's networks, dataset and loss from its factory (imported on use, so
        inference never loads training code)."""
        module, function = self.factory.split(":")
        return getattr(import_module(module), function)(inputs)


_BUILD = "eamm.train.build"
TRAINING_STAGES = (
    TrainingStage("train_fomm", "fomm", f"{_BUILD}:build_fomm", perceptual=True),
    TrainingStage("train_a2fd", "a2fd", f"{_BUILD}:build_a2fd", upstream=("train_fomm",)),
    TrainingStage(
        "finetune_a2fd",
        "a2fd_finetune",
        f"{_BUILD}:build_a2fd",
        upstream=("train_fomm", "train_a2fd"),
        perceptual=True,
    ),
    TrainingStage(
        "train_emotion",
        "emotion",
        f"{_BUILD}:build_emotion",
        upstream=("train_fomm", "finetune_a2fd"),
    ),
    TrainingStage(
        "train_emotion_classifier",
        "emotion_classifier",
        f"{_BUILD}:build_emotion_classifier",
        judge=True,
    ),
    TrainingStage("train_sync_expert", "sync_expert", f"{_BUILD}:build_sync_expert", judge=True),
)
STAGES_BY_NAME = {s.name: s for s in TRAINING_STAGES}
# The EAMM stages (a recipe may set them) and the evaluation judges, in training order.
EAMM_STAGES = tuple(s.name for s in TRAINING_STAGES if not s.judge)
JUDGES = tuple(s.name for s in TRAINING_STAGES if s.judge)
STAGE_DIRS = {s.name: s.folder for s in TRAINING_STAGES}


def training_stage(name: str) -> TrainingStage:
    """The declaration of ``name``; KeyError naming the stages otherwise."""
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        known = ", ".join(STAGES_BY_NAME)
        raise KeyError(f"unknown stage '{name}' (choose from {known})") from None
