"""Assemble a training stage from params: networks (sizes from ``model``), upstream
checkpoints, manifests and the stage's loss function."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from eamm.checkpoint import file_fingerprint, load_checkpoint
from eamm.clips import Clip, load_clips
from eamm.config import EAMM_STAGES, StageParams, TrainerParams
from eamm.errors import EammError
from eamm.manifest import content_fingerprint
from eamm.models import EmotionClassifier, SyncExpert
from eamm.models.build import build_emotion_net, build_networks, profile
from eamm.models.perceptual import find_vgg19_weights
from eamm.models.sync_expert import SYNC_WINDOW
from eamm.train.datasets import (
    AudioWindows,
    EmotionFrames,
    EmotionWindows,
    FommPairs,
    StepBatchSampler,
    SyncWindows,
)
from eamm.train.judges import (
    class_weights,
    classifier_losses,
    sync_losses,
    validate_classifier,
    validate_sync,
)
from eamm.train.loop import Stage
from eamm.train.stages import (
    PerceptualLoss,
    a2fd_losses,
    emotion_losses,
    fomm_losses,
    select_emotion_keypoints,
)

STAGES = EAMM_STAGES
# The stages whose loss has the VGG19 perceptual term.
PERCEPTUAL_STAGES = ("train_fomm", "finetune_a2fd")
# The evaluation judges, trained from the processed data alone.
JUDGES = ("train_emotion_classifier", "train_sync_expert")
# Which upstream checkpoint each stage loads its frozen or initial networks from.
UPSTREAM = {
    "train_fomm": (),
    "train_a2fd": ("fomm",),
    "finetune_a2fd": ("fomm", "a2fd"),
    "train_emotion": ("fomm", "a2fd_finetune"),
    "train_emotion_classifier": (),
    "train_sync_expert": (),
}


def perceptual_vgg(model: dict) -> tuple[Path | None, str]:
    """(VGG19 weights file or None for the stand-in, its source): a random stand-in only for
    the profiles in ``model.perceptual.standin_profiles`` (the demo); the others refuse to
    start without ImageNet weights."""
    cfg = model.get("perceptual") or {}
    allow = model["profile"] in (cfg.get("standin_profiles") or [])
    return find_vgg19_weights(cfg.get("vgg_weights"), allow)


def perceptual_weights(name: str, weights: dict) -> list[float]:
    """The stage's per-VGG-layer weights (``loss_weights.perceptual``)."""
    layer_weights = weights.get("perceptual")
    if not isinstance(layer_weights, list):
        raise EammError(
            f"params: {name}.loss_weights.perceptual must list one weight per VGG19 layer "
            "(FOMM: [10, 10, 10, 10, 10]; EAMM's fine-tune: [0.1, 0.1, 0.1, 0.1, 0.1])"
        )
    return layer_weights


def build_judge(name: str, sizes: dict) -> torch.nn.Module:
    """The network of a judge stage ("train_emotion_classifier" or "train_sync_expert")."""
    if name == "train_emotion_classifier":
        return EmotionClassifier(**sizes["emotion_classifier"])
    return SyncExpert(**sizes["sync_expert"])


def build_judge_stage(name: str, sizes: dict, params: StageParams, paths: list[Path]) -> Stage:
    size = sizes["image_size"]
    if sizes["emotion_classifier"].get("spatial"):  # a spatial head is built for the crop size
        classifier = {k: v for k, v in sizes["emotion_classifier"].items() if k != "spatial"}
        sizes = {**sizes, "emotion_classifier": {**classifier, "input_size": size}}
    net = build_judge(name, sizes)
    min_frames = 1 if name == "train_emotion_classifier" else SYNC_WINDOW
    holdout = [c for p in paths for c in load_clips(p, tuple(params.holdout_splits), min_frames)]
    weights = dict(params.loss_weights)
    if name == "train_emotion_classifier":
        dataset = EmotionFrames(
            _clips(paths, params, 1),
            size,
            params.clip_len,
            params.jitter,
            params.stretch,
            params.blur,
        )
        balance = class_weights([c.emotion_index for c in dataset.clips])
        loss = classifier_losses(net, weights, balance)
        validate = validate_classifier(net, holdout, size)
        key = "emotion_classifier"
    else:
        dataset = SyncWindows(
            _clips(paths, params, SYNC_WINDOW), size, SYNC_WINDOW, params.min_offset
        )
        loss = sync_losses(net, weights)
        validate = validate_sync(net, holdout, size, params.vshift)
        key = "sync_expert"
    return Stage(
        name,
        trainable={key: net},
        frozen={},
        param_groups={key: [key]},
        dataset=dataset,
        loss_fn=loss,
        extra={"image_size": size, "sizes": sizes[key]},
        validate=validate,
    )


def manifest_paths(data_root: Path, datasets: list[str]) -> list[Path]:
    paths = [data_root / d / "processed" / "manifest.parquet" for d in datasets]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise EammError(f"{', '.join(missing)}: manifest missing; run the preprocess stages first")
    return paths


def combined_fingerprint(manifests: list[Path], checkpoints: list[Path]) -> str:
    """What a stage learns from: its manifests' content (timing columns aside) and the bytes
    of the upstream checkpoints it starts from."""
    digest = hashlib.blake2b(digest_size=16)
    for path in manifests:
        digest.update(content_fingerprint(path).encode())
    for path in checkpoints:
        digest.update(file_fingerprint(path).encode())
    return digest.hexdigest()


def _clips(paths: list[Path], params: StageParams, min_frames: int) -> list[Clip]:
    clips = [c for p in paths for c in load_clips(p, tuple(params.splits), min_frames)]
    if not clips:
        raise EammError(
            f"no ok clips with >= {min_frames} frames in split(s) {params.splits} of "
            f"{', '.join(map(str, paths))}"
        )
    return clips


def _optimizer_state(checkpoint: dict, name: str) -> dict:
    state = checkpoint.get("optimizers", {}).get(name)
    if state is None:
        raise EammError(
            f"checkpoint of stage {checkpoint['stage']} has no '{name}' optimiser state to "
            "continue: set finetune_a2fd.resume_optimizer: false to start a fresh Adam"
        )
    return state


def _load(nets: dict, checkpoint: dict, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in checkpoint["models"]:
            raise EammError(f"checkpoint of stage {checkpoint['stage']} has no '{name}'")
        nets[name].load_state_dict(checkpoint["models"][name])


def build_stage(
    name: str,
    model: dict,
    params: StageParams,
    trainer: TrainerParams,
    data_root: Path,
    models_root: Path,
    judges: dict | None = None,
) -> tuple[Stage, str]:
    """(stage, manifest fingerprint) for one of STAGES, or of JUDGES (sizes from the
    ``judges`` params section, for the active model profile)."""
    sizes = profile(model)
    size = sizes["image_size"]
    # Before any data is read: without ImageNet VGG19 weights a non-demo profile stops here.
    vgg_path, vgg_source = None, ""
    if name in PERCEPTUAL_STAGES:
        vgg_path, vgg_source = (
            perceptual_vgg(model)
            if any(perceptual_weights(name, params.loss_weights))
            else (None, "none (perceptual weights 0)")
        )
    torch.manual_seed(trainer.seed)  # the same initial weights on every run of the stage
    paths = manifest_paths(data_root, params.datasets)
    # What the stage learns from: its manifests and the upstream checkpoints it starts from.
    fingerprint = combined_fingerprint(
        paths, [models_root / u / "checkpoint.pt" for u in UPSTREAM[name]]
    )
    if name in JUDGES:
        judge_sizes = (judges or {}).get("profiles", {}).get(model["profile"])
        if judge_sizes is None:
            raise EammError(f"params: judges.profiles.{model['profile']} is missing")
        return build_judge_stage(name, {**judge_sizes, "image_size": size}, params, paths), (
            fingerprint
        )
    nets = build_networks(sizes)
    ups = {u: load_checkpoint(models_root / u / "checkpoint.pt") for u in UPSTREAM[name]}
    weights = dict(params.loss_weights)

    def perceptual() -> PerceptualLoss:
        layer_weights = perceptual_weights(name, weights)
        return PerceptualLoss(
            sizes["perceptual_scales"], layer_weights, vgg_path, weights.get("pixel", 0.0)
        )

    recorded = {"perceptual_vgg": vgg_source} if vgg_source else {}
    if name == "train_fomm":
        perc = perceptual()
        loss = fomm_losses(nets["kp_detector"], nets["generator"], perc, weights, trainer.seed)
        dataset = FommPairs(
            _clips(paths, params, 2), size, params.hflip, params.time_flip, params.jitter
        )
        stage = Stage(
            name,
            trainable={"kp_detector": nets["kp_detector"], "generator": nets["generator"]},
            frozen={"perceptual": perc},
            param_groups={"kp_detector": ["kp_detector"], "generator": ["generator"]},
            dataset=dataset,
            loss_fn=loss,
            extra=recorded,
        )
        return stage, fingerprint

    _load(nets, ups["fomm"], ("kp_detector",))
    teacher = nets["kp_detector"]
    dataset_kwargs = {"image_size": size, "clip_len": params.clip_len}
    if name in ("train_a2fd", "finetune_a2fd"):
        clips = _clips(paths, params, params.clip_len + 1)
        dataset = AudioWindows(clips, jitter=params.jitter, **dataset_kwargs)
        trainable = {"audio_feature": nets["audio_feature"], "kp_detector_a": nets["kp_detector_a"]}
        groups = {"audio_feature": ["audio_feature", "kp_detector_a"]}
        generator, perc, carried = None, None, {}
        if name == "finetune_a2fd":
            _load(nets, ups["a2fd"], ("audio_feature", "kp_detector_a"))
            _load(nets, ups["fomm"], ("generator",))
            generator, perc = nets["generator"], perceptual()
            trainable["generator"] = generator
            groups["generator"] = ["generator"]
            if params.resume_optimizer:  # EAMM continues stage 1's Adam (reference 3.3)
                carried = {"audio_feature": _optimizer_state(ups["a2fd"], "audio_feature")}
        loss = a2fd_losses(
            teacher, nets["audio_feature"], nets["kp_detector_a"], weights, generator, perc
        )
        frozen = {"kp_detector": teacher} | ({"perceptual": perc} if perc is not None else {})
        stage = Stage(
            name, trainable, frozen, groups, dataset, loss, recorded, initial_optimizers=carried
        )
        return stage, fingerprint

    _load(nets, ups["a2fd_finetune"], ("audio_feature", "kp_detector_a"))
    clips = _clips(paths, params, params.clip_len + 1)
    dataset = EmotionWindows(clips, rotation=params.rotation, **dataset_kwargs)
    emotion_kp, scores = choose_emotion_keypoints(
        dataset, teacher, nets["audio_feature"], nets["kp_detector_a"], params, trainer
    )
    torch.manual_seed(trainer.seed)
    emotion = build_emotion_net(sizes, len(emotion_kp))
    loss = emotion_losses(
        teacher,
        nets["audio_feature"],
        nets["kp_detector_a"],
        emotion,
        emotion_kp,
        weights,
        params.classify,
        params.kp_reduction,
    )
    stage = Stage(
        name,
        trainable={"emo_detector": emotion},
        frozen={
            "kp_detector": teacher,
            "audio_feature": nets["audio_feature"],
            "kp_detector_a": nets["kp_detector_a"],
        },
        param_groups={"emo_detector": ["emo_detector"]},
        dataset=dataset,
        loss_fn=loss,
        extra={"emotion_kp": emotion_kp, "emotion_kp_scores": scores},
    )
    return stage, fingerprint


def choose_emotion_keypoints(
    dataset,
    teacher,
    audio_net,
    head,
    params: StageParams,
    trainer: TrainerParams,
    probe_batches: int = 4,
):
    """Apply the selection rule on a fixed, seeded sample of training batches (CPU/GPU alike)."""
    sampler = StepBatchSampler(len(dataset), params.batch_size, probe_batches, trainer.seed + 1)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0)
    for module in (teacher, audio_net, head):
        module.eval()
    return select_emotion_keypoints(teacher, audio_net, head, loader, params.num_emotion_kp)
