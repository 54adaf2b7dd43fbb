"""Assemble a training stage from params: networks (sizes from ``model``), upstream
checkpoints, manifests and the stage's loss function."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from eamm.checkpoint import (
    check_lineage,
    file_fingerprint,
    learned_from,
    load_fingerprinted,
    require_stage,
    require_torch_file,
    unfinished,
)
from eamm.clips import Clip, load_clips
from eamm.config import StageParams, TrainerParams
from eamm.errors import EammError
from eamm.judges import EmotionClassifier, SyncExpert
from eamm.judges.sync_expert import SYNC_WINDOW
from eamm.judges.training import (
    class_weights,
    classifier_losses,
    sync_losses,
    validate_classifier,
    validate_sync,
)
from eamm.manifest import require_dataset
from eamm.models.build import build_emotion_net, build_networks, profile
from eamm.models.perceptual import find_vgg19_weights
from eamm.stages import (
    TrainingStage,
    checkpoint_path,
    manifest_path,
    training_stage,
)
from eamm.train.datasets import (
    AudioWindows,
    EmotionFrames,
    EmotionWindows,
    FommPairs,
    StepBatchSampler,
    SyncWindows,
)
from eamm.train.loop import Difference, Stage, first_three, setting_differences
from eamm.train.stages import (
    PerceptualLoss,
    a2fd_losses,
    emotion_losses,
    fomm_losses,
    select_emotion_keypoints,
)


@dataclass
class StageInputs:
    """What every stage factory starts from: the stage's declaration and params, the model
    sizes, its manifests, the upstream checkpoints (by stage name; None: random weights, for
    timing) and the VGG19 of its perceptual loss (where it has one). With ``given_clips`` the
    stage trains and validates on those clips instead of its manifests' (timing)."""

    spec: TrainingStage
    params: StageParams
    sizes: dict
    trainer: TrainerParams
    manifests: list[Path]
    upstream: dict[str, dict | None]
    vgg_path: Path | None = None
    vgg_source: str = ""
    judge_sizes: dict | None = None
    given_clips: list[Clip] | None = None
    # Where the upstream checkpoints were read from, and the ``model`` section (the errors
    # name the file and the sizes that differ)
    upstream_paths: dict[str, Path] = field(default_factory=dict)
    model: dict | None = None

    def clips(self, min_frames: int) -> list[Clip]:
        """The training clips with at least ``min_frames`` frames; EammError when none, or
        when the batch is larger than the samples they hold (``check_batch_size``)."""
        if self.given_clips is None:
            clips = _clips(self.manifests, self.params, min_frames, self.spec.name)
            check_batch_size(self.spec.name, self.params.batch_size, clips, self.manifests)
            return clips
        clips = [c for c in self.given_clips if c.num_frames >= min_frames]
        if not clips:
            raise EammError(f"no given clips with >= {min_frames} frames")
        return clips

    def holdout(self, min_frames: int) -> list[Clip]:
        """The held-out clips of a judge (its ``holdout_splits``)."""
        if self.given_clips is not None:
            return self.clips(min_frames)
        splits = tuple(self.params.holdout_splits)
        clips = [c for p in self.manifests for c in load_clips(p, splits, min_frames)]
        if not clips:  # its held-out numbers are then not measured: said, not a silent 0 clips
            print(
                f"note: {self.spec.name}: no held-out clips in splits {', '.join(splits)} of "
                f"{', '.join(map(str, self.manifests))}: its held-out accuracy is not measured",
                file=sys.stderr,
            )
        return clips

    @property
    def recorded(self) -> dict:
        return {"perceptual_vgg": self.vgg_source} if self.vgg_source else {}

    def perceptual(self) -> PerceptualLoss:
        weights = self.params.loss_weights
        return PerceptualLoss(
            self.sizes["perceptual_scales"],
            perceptual_weights(self.spec.name, weights),
            self.vgg_path,
            weights.get("pixel", 0.0),
        )


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


def _judge_stage(inputs: StageInputs, key: str, dataset, loss, validate, net, sizes) -> Stage:
    return Stage(
        inputs.spec.name,
        trainable={key: net},
        frozen={},
        param_groups={key: [key]},
        dataset=dataset,
        loss_fn=loss,
        extra={"image_size": inputs.sizes["image_size"], "sizes": sizes[key]},
        validate=validate,
    )


def build_emotion_classifier(inputs: StageInputs) -> Stage:
    """The emotion judge: an 8-way classifier of real frames, held-out speakers for its
    accuracy (``docs/evaluation.md``)."""
    params, size = inputs.params, inputs.sizes["image_size"]
    sizes = {**inputs.judge_sizes, "image_size": size}
    if sizes["emotion_classifier"].get("spatial"):  # a spatial head is built for the crop size
        classifier = {k: v for k, v in sizes["emotion_classifier"].items() if k != "spatial"}
        sizes["emotion_classifier"] = {**classifier, "input_size": size}
    net = EmotionClassifier(**sizes["emotion_classifier"])
    holdout = inputs.holdout(1)
    clips = inputs.clips(1)
    emotions = sorted({c.emotion or "none" for c in clips})
    if len(emotions) < 2:  # it learned the one class: held-out accuracy 1.0, a judge of nothing
        raise EammError(
            f"train_emotion_classifier: its {len(clips)} training clip(s) hold one emotion "
            f"({emotions[0]}): nothing to tell apart; preprocess clips of other emotions"
        )
    dataset = EmotionFrames(
        clips,
        size,
        params.clip_len,
        params.jitter,
        params.stretch,
        params.blur,
    )
    loss = classifier_losses(
        net, dict(params.loss_weights), class_weights([c.emotion_index for c in dataset.clips])
    )
    validate = validate_classifier(net, holdout, size)
    return _judge_stage(inputs, "emotion_classifier", dataset, loss, validate, net, sizes)


def build_sync_expert(inputs: StageInputs) -> Stage:
    """The lip-sync judge: audio/video windows in and out of sync, its held-out offset
    accuracy on LRW's val split."""
    params, size = inputs.params, inputs.sizes["image_size"]
    sizes = {**inputs.judge_sizes, "image_size": size}
    net = SyncExpert(**sizes["sync_expert"])
    holdout = inputs.holdout(SYNC_WINDOW)
    dataset = SyncWindows(inputs.clips(SYNC_WINDOW), size, SYNC_WINDOW, params.min_offset)
    loss = sync_losses(net, dict(params.loss_weights))
    validate = validate_sync(net, holdout, size, params.vshift)
    return _judge_stage(inputs, "sync_expert", dataset, loss, validate, net, sizes)


def manifest_paths(data_root: Path, datasets: list[str]) -> list[Path]:
    paths = [manifest_path(data_root, d) for d in datasets]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise EammError(f"{', '.join(missing)}: manifest missing; run the preprocess stages first")
    for dataset, path in zip(datasets, paths, strict=True):
        require_dataset(path, dataset)
    return paths


def combined_fingerprint(manifests: list[Path], checkpoints: list[Path]) -> str:
    """What a stage learns from: its manifests' content (timing columns aside) and the bytes
    of the upstream checkpoints it starts from."""
    return learned_from(manifests, [file_fingerprint(path) for path in checkpoints])


def check_batch_size(stage: str, batch_size: int, clips: list[Clip], manifests: list[Path]) -> None:
    """Refuse a batch larger than every frame of the training clips: samples (a frame pair,
    a window, a few frames of one clip) are drawn with replacement, so such a batch only
    repeats them, and it can take the machine's memory before the first step (5000 FOMM pairs
    at 64 px: 24 GB). A batch above the clip count is fine (the tests' one-clip stages with
    batch 2: other frames of the clip); ``in_steps`` refuses an epoch without a full batch."""
    frames = sum(c.num_frames for c in clips)
    if batch_size > frames:
        where = ", ".join(str(p) for p in manifests)
        raise EammError(
            f"params: {stage}.batch_size {batch_size} is more than the {frames} frames of the "
            f"{len(clips)} training clip(s) in {where}: a batch would only repeat samples "
            f"(drawn with replacement); lower {stage}.batch_size"
        )


def _clips(paths: list[Path], params: StageParams, min_frames: int, stage: str) -> list[Clip]:
    """Every manifest's training clips; a listed dataset without any is an error, not a stage
    silently trained on the others."""
    clips = []
    for path in paths:
        found = load_clips(path, tuple(params.splits), min_frames)
        if not found:
            raise EammError(
                f"{path}: no ok clips with >= {min_frames} frames in split(s) {params.splits}: "
                f"preprocess that dataset, or drop it from {stage}.datasets"
            )
        clips += found
    return clips


def _optimizer_state(inputs: StageInputs, upstream: str, name: str) -> dict:
    checkpoint = inputs.upstream[upstream]
    optimizers = checkpoint.get("optimizers")
    state = optimizers.get(name) if isinstance(optimizers, dict) else None
    if state is None:
        where = inputs.upstream_paths.get(upstream, f"checkpoint of stage {upstream}")
        raise EammError(
            f"{where}: checkpoint of stage {checkpoint.get('stage')} has no '{name}' optimiser "
            "state to continue: set finetune_a2fd.resume_optimizer: false to start a fresh Adam"
        )
    return state


def _load(nets: dict, inputs: StageInputs, upstream: str, names: tuple[str, ...]) -> None:
    """Load ``names`` from the ``upstream`` stage's checkpoint into ``nets``; EammError naming
    the file when it lacks one or holds networks of other sizes."""
    checkpoint = inputs.upstream[upstream]
    if checkpoint is None:  # timing: the upstream's random weights cost the same
        return
    where = inputs.upstream_paths.get(upstream, f"checkpoint of stage {upstream}")
    models = checkpoint.get("models")
    for name in names:
        if not isinstance(models, dict) or name not in models:
            raise EammError(
                f"{where}: checkpoint of stage {checkpoint.get('stage')} has no '{name}'"
            )
        try:
            nets[name].load_state_dict(models[name])
        except (RuntimeError, ValueError, TypeError) as err:
            raise EammError(
                f"{where}: its {name} has other sizes than these params build "
                f"({_size_difference(checkpoint, inputs.model, name, err)}): train {upstream} "
                "again with these params, or use the params it was trained with"
            ) from None
        if changed := _setting_difference(checkpoint, inputs.model, name):
            raise EammError(  # a temperature is not a weight: it loaded, and ran as it was not
                f"{where}: its {name} was trained with other settings than these params build "
                f"({changed}): train {upstream} again with these params, or use the params it "
                "was trained with"
            )


# The sections of a size profile each network is built from (``build_networks``).
NETWORK_SECTIONS = {
    "kp_detector": ("common", "kp_detector"),
    "generator": ("common", "generator"),
    "audio_feature": ("audio",),
    "kp_detector_a": ("common", "audio_head"),
}


def _recorded_model(checkpoint: dict) -> dict | None:
    """The ``model`` section a checkpoint records, if it records one."""
    recorded = checkpoint.get("params")
    theirs = recorded.get("model") if isinstance(recorded, dict) else None
    return theirs if isinstance(theirs, dict) else None


def _profile_differences(theirs: dict, model: dict) -> list[Difference]:
    """(key, recorded, given) for each size-profile key that differs ([] where either profile
    cannot be read: an imported EAMM checkpoint records none)."""
    try:
        return setting_differences(profile(theirs), profile(model))
    except (EammError, KeyError, TypeError, AttributeError):
        return []


def _own(name: str, differences: list[Difference]) -> list[Difference]:
    """The differences in the profile sections network ``name`` is built from."""
    return [d for d in differences if d[0].split(".")[0] in NETWORK_SECTIONS.get(name, ())]


def _shown(model: dict, differences: list[Difference]) -> str:
    return first_three(
        [
            f"model.profiles.{model['profile']}.{k}: {old} in that checkpoint, {new} in the params"
            for k, old, new in differences
        ]
    )


def _setting_difference(checkpoint: dict, model: dict | None, name: str) -> str:
    """The settings of ``name`` (its size-profile sections) the checkpoint recorded otherwise
    than ``model`` gives ("" if none, or where they cannot be compared)."""
    theirs = _recorded_model(checkpoint)
    if theirs is None or model is None:
        return ""
    if theirs.get("profile") != model.get("profile"):  # then the sizes differ too: named above
        return ""
    return _shown(model, _own(name, _profile_differences(theirs, model)))


def _size_difference(checkpoint: dict, model: dict | None, name: str, err: Exception) -> str:
    """What differs between the model section the checkpoint was trained with and ``model``:
    the profile, or the sizes ``name`` is built from (else any size), else torch's first
    mismatch."""
    theirs = _recorded_model(checkpoint)
    if theirs is not None and model is not None:
        if theirs.get("profile") != model.get("profile"):
            return (
                f"model.profile: '{theirs.get('profile')}' in that checkpoint, "
                f"'{model.get('profile')}' in the params"
            )
        differences = _profile_differences(theirs, model)
        if keys := _own(name, differences) or differences:
            return _shown(model, keys)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)


def upstream_checkpoints(name: str, models_root: Path) -> dict[str, Path]:
    """The checkpoints stage ``name`` starts from, by stage; a missing one stops the run in one
    line naming the file and the command that trains it."""
    checkpoints = {u: checkpoint_path(models_root, u) for u in training_stage(name).upstream}
    for upstream_stage, path in checkpoints.items():
        if not path.is_file():
            raise EammError(
                f"{path}: no checkpoint of {upstream_stage}, which {name} starts from: train it "
                f"first (eamm train {upstream_stage} --models-root {models_root})"
            )
        require_torch_file(path)  # a zeroed one was found only inside the flow
    return checkpoints


def stage_vgg(name: str, model: dict, params: StageParams) -> tuple[Path | None, str]:
    """The stage's perceptual VGG19 (``perceptual_vgg``; ``(None, "")`` for a stage without a
    perceptual loss): called by ``eamm train`` before Prefect starts and again by the build."""
    if not training_stage(name).perceptual:
        return None, ""
    if not any(perceptual_weights(name, params.loss_weights)):
        return None, "none (perceptual weights 0)"
    return perceptual_vgg(model)


def build_stage(
    name: str,
    model: dict,
    params: StageParams,
    trainer: TrainerParams,
    data_root: Path,
    models_root: Path,
    judges: dict | None = None,
) -> tuple[Stage, str]:
    """(stage, what it learns from) for a stage of ``eamm.stages``, built by its declared
    factory (judge sizes from the ``judges`` params section, for the active model profile)."""
    spec = training_stage(name)
    # Before any data is read: without ImageNet VGG19 weights a non-demo profile stops here.
    vgg_path, vgg_source = stage_vgg(name, model, params)
    judge_sizes = _judge_sizes(spec, model, judges)
    torch.manual_seed(trainer.seed)  # the same initial weights on every run of the stage
    paths = manifest_paths(data_root, params.datasets)
    checkpoints = upstream_checkpoints(name, models_root)
    # What the stage learns from: its manifests and the upstream checkpoints it starts from
    # (each recorded in its checkpoint as ``upstream``, the lineage generation checks).
    read = {u: load_fingerprinted(path) for u, path in checkpoints.items()}
    loaded = {u: state for u, (state, _) in read.items()}
    upstream = {u: digest for u, (_, digest) in read.items()}
    fingerprint = learned_from(paths, list(upstream.values()))
    for u, state in loaded.items():
        require_stage(state, checkpoints[u], u)
        if note := unfinished(state, checkpoints[u], u):
            print(f"note: {note}; {name} starts from it", file=sys.stderr)
    # an upstream trained from another run's checkpoint than the one beside it: refused
    check_lineage(
        [(checkpoints[u], state) for u, state in loaded.items()], checkpoints, known=upstream
    )
    inputs = StageInputs(
        spec,
        params,
        profile(model),
        trainer,
        paths,
        loaded,
        vgg_path,
        vgg_source,
        judge_sizes,
        upstream_paths=checkpoints,
        model=model,
    )
    stage = spec.build(inputs)
    stage.upstream = upstream
    return stage, fingerprint


def build_for_timing(
    name: str,
    model: dict,
    params: StageParams,
    trainer: TrainerParams,
    clips: list[Clip],
    judges: dict | None = None,
) -> Stage:
    """The stage as its declared factory builds it, on ``clips``, with random weights where
    training loads upstream checkpoints and a random-init VGG19: a step costs what a
    training step costs (``benchmarks/train_step.py``, ``benchmarks/loader.py``)."""
    spec = training_stage(name)
    torch.manual_seed(trainer.seed)
    inputs = StageInputs(
        spec,
        params,
        profile(model),
        trainer,
        [],
        {u: None for u in spec.upstream},
        judge_sizes=_judge_sizes(spec, model, judges),
        given_clips=clips,
    )
    return spec.build(inputs)


def _judge_sizes(spec: TrainingStage, model: dict, judges: dict | None) -> dict | None:
    if not spec.judge:
        return None
    sizes = (judges or {}).get("profiles", {}).get(model["profile"])
    if sizes is None:
        raise EammError(f"params: judges.profiles.{model['profile']} is missing")
    return sizes


def build_fomm(inputs: StageInputs) -> Stage:
    """FOMM (reference 3.0): keypoint detector and generator from frame pairs."""
    nets, params = build_networks(inputs.sizes), inputs.params
    perc = inputs.perceptual()
    weights = dict(params.loss_weights)
    num_kp = inputs.sizes["common"]["num_kp"]
    if weights.get("landmarks", 0) and num_kp != len(FommPairs.LANDMARK_KEYPOINTS):
        raise EammError(
            f"params: {inputs.spec.name}.loss_weights.landmarks needs "
            f"{len(FommPairs.LANDMARK_KEYPOINTS)} keypoints (one per landmark), the profile "
            f"has {num_kp}"
        )
    loss = fomm_losses(nets["kp_detector"], nets["generator"], perc, weights, inputs.trainer.seed)
    clips = inputs.clips(2)
    dataset = FommPairs(
        clips,
        inputs.sizes["image_size"],
        params.hflip,
        params.time_flip,
        params.jitter,
        mouth=bool(weights.get("mouth", 0)),
        neutral_source=params.neutral_source,
        landmarks=bool(weights.get("landmarks", 0)),
    )
    return Stage(
        inputs.spec.name,
        trainable={"kp_detector": nets["kp_detector"], "generator": nets["generator"]},
        frozen={"perceptual": perc},
        param_groups={"kp_detector": ["kp_detector"], "generator": ["generator"]},
        dataset=dataset,
        loss_fn=loss,
        extra=inputs.recorded,
    )


def build_a2fd(inputs: StageInputs) -> Stage:
    """EAMM stage 1 (reference 3.2) and, with a ``train_a2fd`` upstream, its fine-tune
    (3.3): audio -> keypoints, then through FOMM's generator with the perceptual term."""
    nets, params = build_networks(inputs.sizes), inputs.params
    _load(nets, inputs, "train_fomm", ("kp_detector",))
    teacher = nets["kp_detector"]
    clips = inputs.clips(params.clip_len + 1)
    dataset = AudioWindows(
        clips,
        jitter=params.jitter,
        image_size=inputs.sizes["image_size"],
        clip_len=params.clip_len,
    )
    trainable = {"audio_feature": nets["audio_feature"], "kp_detector_a": nets["kp_detector_a"]}
    groups = {"audio_feature": ["audio_feature", "kp_detector_a"]}
    generator, perc, carried = None, None, {}
    if "train_a2fd" in inputs.spec.upstream:
        stage_one = inputs.upstream["train_a2fd"]
        _load(nets, inputs, "train_a2fd", ("audio_feature", "kp_detector_a"))
        _load(nets, inputs, "train_fomm", ("generator",))
        generator, perc = nets["generator"], inputs.perceptual()
        trainable["generator"] = generator
        groups["generator"] = ["generator"]
        if params.resume_optimizer and stage_one is not None:  # EAMM continues stage 1's Adam
            carried = {"audio_feature": _optimizer_state(inputs, "train_a2fd", "audio_feature")}
    loss = a2fd_losses(
        teacher,
        nets["audio_feature"],
        nets["kp_detector_a"],
        dict(params.loss_weights),
        generator,
        perc,
    )
    frozen = {"kp_detector": teacher} | ({"perceptual": perc} if perc is not None else {})
    return Stage(
        inputs.spec.name,
        trainable,
        frozen,
        groups,
        dataset,
        loss,
        inputs.recorded,
        initial_optimizers=carried,
    )


def build_emotion(inputs: StageInputs) -> Stage:
    """EAMM stage 3 (reference 3.4): the emotion displacement of the chosen keypoints."""
    nets, params, trainer = build_networks(inputs.sizes), inputs.params, inputs.trainer
    _load(nets, inputs, "train_fomm", ("kp_detector",))
    _load(nets, inputs, "finetune_a2fd", ("audio_feature", "kp_detector_a"))
    teacher = nets["kp_detector"]
    clips = inputs.clips(params.clip_len + 1)
    dataset = EmotionWindows(
        clips,
        rotation=params.rotation,
        image_size=inputs.sizes["image_size"],
        clip_len=params.clip_len,
    )
    emotion_kp, scores = choose_emotion_keypoints(
        dataset, teacher, nets["audio_feature"], nets["kp_detector_a"], params, trainer
    )
    torch.manual_seed(trainer.seed)
    emotion = build_emotion_net(inputs.sizes, len(emotion_kp))
    loss = emotion_losses(
        teacher,
        nets["audio_feature"],
        nets["kp_detector_a"],
        emotion,
        emotion_kp,
        dict(params.loss_weights),
        params.classify,
        params.kp_reduction,
    )
    return Stage(
        inputs.spec.name,
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
    if params.num_emotion_kp > teacher.kp.out_channels:  # [:count] would take all, silently
        raise EammError(
            f"params: train_emotion.num_emotion_kp {params.num_emotion_kp} is more than the "
            f"{teacher.kp.out_channels} keypoints of the model profile"
        )
    return select_emotion_keypoints(teacher, audio_net, head, loader, params.num_emotion_kp)
