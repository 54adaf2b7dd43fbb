"""The pipeline, declared once. Every DVC stage is a ``PipelineStage`` (the ``eamm`` command it
runs, the params sections it reads, what it writes), and where data and checkpoints live is
answered here (``processed_dir``, ``manifest_path``, ``index_path``, ``checkpoint_path``);
``tests/test_stages_spec.py`` holds ``dvc.yaml`` to these declarations.

The training stages, declared once: name (the DVC stage, its params section and the
``eamm train`` argument), checkpoint folder under the models root, the stages whose checkpoints
it starts from, whether its loss has the VGG19 perceptual term, and the factory that builds its
networks, dataset and loss. Training, generation, the judges, the report, the flows and the
benchmarks read names, folders and wiring from here; adding a stage is one factory plus one
declaration. Nothing here imports training (inference reads the folders too).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from eamm.config import EVALUATED_GENERATE

DATASETS = ("mead", "lrw")
MANIFEST_NAME = "manifest.parquet"  # in a dataset's processed folder
CHECKPOINT_NAME = "checkpoint.pt"  # in a training stage's folder
CONFUSION_PNG = "confusion.png"  # the emotion judge's held-out confusion matrix, in its folder
OFFSETS_PNG = "offsets.png"  # the sync judge's held-out offsets, in its folder


@dataclass(frozen=True)
class TrainingStage:
    name: str
    folder: str
    # ``module:function`` taking a ``eamm.train.build.StageInputs``, returning a ``Stage``
    factory: str
    upstream: tuple[str, ...] = ()  # stage names whose checkpoints it loads
    perceptual: bool = False  # its loss has the VGG19 perceptual term
    judge: bool = False  # an evaluation judge (ours): no recipe sets it
    # The ``loss_weights`` keys its loss reads (another key, a typo, would weigh nothing)
    loss_keys: tuple[str, ...] = ()
    # The stage-specific settings (``STAGE_SETTINGS``) its data and loss read: another one set
    # in its section would be recorded as if it applied and change nothing
    settings: tuple[str, ...] = ()
    # The keys of the active ``model.profiles`` entry its networks (trained and frozen) are
    # built from: an edit elsewhere in the profile (stage 3's network) does not restart it
    profile_sections: tuple[str, ...] = ("image_size",)

    def build(self, inputs: Any) -> Any:
        """The stage's networks, dataset and loss from its factory (imported on use, so
        inference never loads training code)."""
        module, function = self.factory.split(":")
        return getattr(import_module(module), function)(inputs)


_BUILD = "eamm.train.build"
_RENDERED = ("perceptual", "pixel")  # the renderer's image terms (eamm.models.perceptual)
_AUDIO = ("audio", "heatmap")
# ``model.profiles`` keys: FOMM's networks, and what ``build_networks`` builds after them from
# one seed (the audio branch's initial weights depend on every size before them)
_FOMM = ("image_size", "common", "kp_detector", "generator")
_NETWORKS = (*_FOMM, "audio", "audio_head")
TRAINING_STAGES = (
    TrainingStage(
        "train_fomm",
        "fomm",
        f"{_BUILD}:build_fomm",
        perceptual=True,
        loss_keys=(*_RENDERED, "equivariance_value", "equivariance_jacobian", "landmarks", "mouth"),
        settings=("jitter", "hflip", "time_flip", "neutral_source"),
        profile_sections=(*_FOMM, "perceptual_scales"),
    ),
    TrainingStage(
        "train_a2fd",
        "a2fd",
        f"{_BUILD}:build_a2fd",
        upstream=("train_fomm",),
        loss_keys=_AUDIO,
        settings=("clip_len", "jitter"),
        profile_sections=_NETWORKS,
    ),
    TrainingStage(
        "finetune_a2fd",
        "a2fd_finetune",
        f"{_BUILD}:build_a2fd",
        upstream=("train_fomm", "train_a2fd"),
        perceptual=True,
        loss_keys=(*_AUDIO, *_RENDERED),
        settings=("clip_len", "jitter", "resume_optimizer"),
        profile_sections=(*_NETWORKS, "perceptual_scales"),
    ),
    TrainingStage(
        "train_emotion",
        "emotion",
        f"{_BUILD}:build_emotion",
        upstream=("train_fomm", "finetune_a2fd"),
        loss_keys=("emo", "classify"),
        settings=("clip_len", "rotation", "num_emotion_kp", "classify", "kp_reduction"),
        profile_sections=(*_NETWORKS, "emotion"),
    ),
    TrainingStage(
        "train_emotion_classifier",
        "emotion_classifier",
        f"{_BUILD}:build_emotion_classifier",
        judge=True,
        loss_keys=("classify",),
        settings=("clip_len", "jitter", "stretch", "blur", "holdout_splits"),
    ),
    TrainingStage(
        "train_sync_expert",
        "sync_expert",
        f"{_BUILD}:build_sync_expert",
        judge=True,
        loss_keys=("sync",),
        settings=("holdout_splits", "min_offset", "vshift"),
    ),
)
STAGES_BY_NAME = {s.name: s for s in TRAINING_STAGES}
# The stage-section keys only some stages read (every stage reads the rest: length, batch,
# optimiser, schedule, logging, datasets, splits, loss_weights)
STAGE_SETTINGS = frozenset(k for s in TRAINING_STAGES for k in s.settings)
# The EAMM stages (a recipe may set them) and the evaluation judges, in training order.
EAMM_STAGES = tuple(s.name for s in TRAINING_STAGES if not s.judge)
JUDGES = tuple(s.name for s in TRAINING_STAGES if s.judge)
STAGE_DIRS = {s.name: s.folder for s in TRAINING_STAGES}
# The checkpoints generation animates with (the fine-tune's, else stage 1's, audio branch).
GENERATION_STAGES = ("train_fomm", "finetune_a2fd", "train_emotion")


def training_stage(name: str) -> TrainingStage:
    """The declaration of ``name``; KeyError naming the stages otherwise."""
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        known = ", ".join(STAGES_BY_NAME)
        raise KeyError(f"unknown stage '{name}' (choose from {known})") from None


def processed_dir(data_root: str | Path, dataset: str) -> Path:
    """Where ``eamm preprocess`` writes a dataset's shards, manifest and run log."""
    return Path(data_root) / dataset / "processed"


def manifest_path(data_root: str | Path, dataset: str) -> Path:
    return processed_dir(data_root, dataset) / MANIFEST_NAME


def index_path(data_root: str | Path, dataset: str) -> Path:
    return Path(data_root) / dataset / "index.parquet"


def checkpoint_path(models_root: str | Path, stage: str) -> Path:
    """The checkpoint a training stage writes (and its downstream stages load)."""
    return Path(models_root) / training_stage(stage).folder / CHECKPOINT_NAME


@dataclass(frozen=True)
class PipelineStage:
    """One DVC stage: the ``eamm`` command it runs, the params sections it reads and the
    outputs it writes (DVC ``outs`` and ``metrics``, relative to the repository)."""

    name: str
    command: str
    params: tuple[str, ...]
    outputs: tuple[str, ...]


def _data_stages(data: str = "data") -> list[PipelineStage]:
    stages = [
        PipelineStage(
            "sample_data",
            "sample-data",
            ("sample_data",),
            (f"{data}/sample/raw", f"{data}/sample/portrait.png", f"{data}/sample/summary.json"),
        )
    ]
    for dataset in DATASETS:
        folder = f"{data}/{dataset}"
        stages.append(
            PipelineStage(
                f"index_{dataset}",
                f"index {dataset}",
                (f"datasets.{dataset}",),
                (index_path(data, dataset).as_posix(), f"{folder}/index_report.json"),
            )
        )
    for dataset in DATASETS:
        folder = f"{data}/{dataset}"
        stages.append(
            PipelineStage(
                f"preprocess_{dataset}",
                f"preprocess {dataset}",
                ("preprocess",),
                (processed_dir(data, dataset).as_posix(), f"{folder}/preprocess_summary.json"),
            )
        )
    return stages


def _training_params(stage: TrainingStage) -> tuple[str, ...]:
    """The sizes, the trainer, its own section; a judge its sizes, an EAMM stage the recipe."""
    if stage.judge:
        return ("model", "judges", "trainer", stage.name)
    return ("model", "trainer", stage.name, "recipe", "recipes")


def _training_outputs(stage: TrainingStage, models: str = "models") -> tuple[str, ...]:
    folder = f"{models}/{stage.folder}"
    figures = {
        "train_emotion_classifier": (CONFUSION_PNG,),
        "train_sync_expert": (OFFSETS_PNG,),
    }.get(stage.name, ())
    samples = () if stage.judge else ("samples.png",)
    names = (
        "checkpoint.pt",
        "loss.png",
        *samples,
        *figures,
        "metrics.json",
        "dvclive/plots/metrics",
    )
    return tuple(f"{folder}/{name}" for name in names)


PIPELINE = (
    *_data_stages(),
    *(
        PipelineStage(s.name, f"train {s.name}", _training_params(s), _training_outputs(s))
        for s in TRAINING_STAGES
    ),
    PipelineStage("generate_demo", "generate", ("generate",), ("outputs/demo",)),
    PipelineStage(
        "evaluate",
        "evaluate",
        # the generate settings it reads; a recipe may cap the clips scored
        ("evaluate", *(f"generate.{k}" for k in EVALUATED_GENERATE), "recipe", "recipes"),
        tuple(
            f"reports/{name}"
            for name in (
                "evaluation.md",
                "metrics.png",
                "contact_sheet.png",
                "judge_confusion.png",
                "judge_offsets.png",
                "clip_scores.json",
                "metrics.json",
            )
        ),
    ),
)
PIPELINE_BY_NAME = {s.name: s for s in PIPELINE}
