"""Typed views of ``params.yaml`` sections (one pydantic model per DVC stage group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from eamm.errors import EammError

# libx264's presets: anything else fails only when the first clip is encoded
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
# The rates the EAMM recipe is built on, fixed (not params): one video frame at 25 fps is 4 MFCC
# hops of 10 ms of 16 kHz audio (eamm.audio.mfcc); the audio networks, generation and
# evaluation all assume them.
VIDEO_FPS = 25
AUDIO_RATE = 16000
AUDIO_PER_FRAME = AUDIO_RATE // VIDEO_FPS  # 640 samples
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
LRW_SPLITS = ("train", "val", "test")


Seed = Annotated[int, Field(ge=0)]  # numpy's and torch's generators take no negative seed


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleMeadClip(Strict):
    emotion: Literal[MEAD_EMOTIONS]  # type: ignore[valid-type]
    level: int = Field(ge=1, le=3)
    utterance: str = Field(pattern=r"^\d{3}$")


class SampleMead(Strict):
    # MEAD speaker id -> identity (a name in eamm.sample.face.IDENTITIES)
    speakers: dict[str, str] = Field(min_length=1)
    # None: every emotion at each of its MEAD levels (neutral: level 1 only), ``utterances`` each
    clips: list[SampleMeadClip] | None = Field(None, min_length=1)
    utterances: int = Field(1, ge=1, le=999)
    duration_s: tuple[float, float] = (1.2, 1.6)
    width: int = 768
    height: int = 432
    fps: int = 30
    audio_rate: int = 48000
    crf: int = 23


class SampleLrw(Strict):
    words: list[str] = Field(min_length=1)
    clips_per_split: dict[Literal["train", "val", "test"], int]
    # identities per split, used in turn (held-out ones for val and test)
    identities: dict[Literal["train", "val", "test"], list[str]]
    num_frames: int = 29
    size: int = 256
    fps: int = 25
    audio_rate: int = 16000
    crf: int = 20


class SampleDataParams(Strict):
    seed: Seed = 0
    mead: SampleMead
    lrw: SampleLrw
    portrait: str = "astronaut_wide"  # identity of the demo portrait (a held-out one)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (``steps: 6`` and, lines
    later, ``steps: 7``: the last one won, without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: Path) -> dict:
    """A params file's sections; anything that is not a YAML mapping is one line naming it."""
    try:
        data = yaml.load(path.read_bytes().decode(), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError:
        raise EammError(f"{path}: cannot read params (not UTF-8 text)") from None
    except yaml.YAMLError as err:  # one line: PyYAML's own message spans four
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        context = getattr(err, "context", None)
        reason = f"{context}: {what}" if context else what
        raise EammError(f"{path}: cannot read params ({reason}{where})") from None
    except OSError as err:
        raise EammError(f"{path}: cannot read params ({err})") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise EammError(f"{path}: params must be a mapping of sections, not a {kind}")
    return data


def load_section(params_path: str | Path, section: str, model: type[BaseModel]) -> BaseModel:
    """Validate one top-level section of a params file; errors name the file and the key."""
    path = Path(params_path)
    data = read_params(path)
    if section not in data:
        raise EammError(f"{path}: missing section '{section}'")
    return validate_section(data[section], section, model, path)


def validate_section(value, section: str, model: type[BaseModel], source: str | Path) -> BaseModel:
    """``model`` from ``value``; an error names ``source`` and the dotted key under ``section``."""
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in (section, *first["loc"]))
        if first["type"] == "extra_forbidden":  # a typo: not a value, a key the section lacks
            raise EammError(f"{source}: unknown key {where} (a typo?)") from None
        reason = first["msg"].removeprefix("Value error, ")  # a validator's own sentence
        raise EammError(f"{source}: bad value for {where}: {reason}") from None


class LandmarkParams(Strict):
    backend: Literal["mediapipe", "fan"] = "mediapipe"
    fan_weights_dir: str | None = None
    min_detection_confidence: float = Field(0.5, gt=0, lt=1)
    # Where the face mesh model runs: mediapipe's FaceMesh graph, or the same model bare through
    # LiteRT with the graph's detector/ROI/tracking steps done by us (eamm.face.mesh_litert;
    # ~1 ms less per crop, points 0.03 px from the graph's on real clips; docs/performance.md).
    mesh_engine: Literal["graph", "litert"] = "litert"


class PreprocessParams(Strict):
    """Per-clip preprocessing (eamm.preprocess.clip)."""

    # Fixed: one frame = 4 MFCC hops of 10 ms (EAMM's windows, the audio networks, generation)
    fps: Literal[VIDEO_FPS] = VIDEO_FPS  # type: ignore[valid-type]
    crop_size: int = Field(256, ge=64)
    crf: int = Field(10, ge=0, le=51)
    preset: Literal[X264_PRESETS] = "veryfast"  # type: ignore[valid-type]
    pix_fmt: Literal["yuv444p", "yuv420p"] = "yuv444p"
    # frames.mp4 through libx264 in the worker (PyAV) or an ffmpeg subprocess per clip: the same
    # decoded pixels; the in-process one saves the process start-up, most of a short clip's cost.
    encoder: Literal["pyav", "ffmpeg"] = "pyav"
    # "default" = the project's own template (eamm/face/data/template68.npy), or a path to a
    # (68, 2) template in crop pixels, e.g. EAMM's M003_template.npy for its checkpoints.
    template: str = "default"
    landmarks: LandmarkParams = LandmarkParams()
    detect_frames: int = Field(8, ge=1)
    detect_width: int = Field(640, ge=128)
    # Run the face detector on every one of the detect_frames, or only until it finds a face
    # (the later ones reuse that box to crop for the still mesh, which finds the points per
    # frame): the detector is the dearest model per frame; the median estimate is as good.
    detect_boxes: Literal["every", "first"] = "first"
    # The still mesh on those frames' crops finds the face in each ("every", mediapipe's
    # still-image mode) or once, its region reused while the box is ("first"; LiteRT mesh
    # only): a detector call less per frame, the alignment as close to EAMM's (performance.md).
    head_rois: Literal["every", "first"] = "first"
    on_multiple_faces: Literal["largest", "fail"] = "largest"
    min_frames: int = Field(7, ge=1)
    max_av_mismatch_s: float = Field(0.5, ge=0)
    decoder_threads: int = Field(1, ge=1)

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str) -> str:
        """Refused here, naming the key, rather than as a raw error in the first clip."""
        if value != "default" and not Path(value).is_file():
            raise ValueError(f"no template file {value} ('default' or a .npy path)")
        return value


# follow: symbolic links are followed wherever they point (DVC's symlink cache, a tree of links
# to shared storage); inside: links that leave the raw folder are listed as problems and skipped
# (an untrusted download)
LinkPolicy = Literal["follow", "inside"]


class RawTreeParams(Strict):
    raw: str
    links: LinkPolicy = "follow"


class MeadDatasetParams(RawTreeParams):
    views: list[str] = ["front"]
    speakers: list[str] | None = None
    emotions: list[str] | None = None
    split_file: str = "splits/mead_v1.yaml"


class LrwDatasetParams(RawTreeParams):
    words: list[str] | None = None
    splits: list[Literal["train", "val", "test"]] = ["train", "val", "test"]


class DatasetsParams(Strict):
    mead: MeadDatasetParams
    lrw: LrwDatasetParams


class PreprocessRunParams(Strict):
    """How the preprocess flow runs; none of it changes outputs."""

    # threads | processes | a Dask scheduler address (tcp://host:8786, needs the [dask] extra)
    runner: str = "threads"
    workers: int | None = Field(None, ge=1)  # None: one per CPU core
    # clips per task, per dataset (0 started empty tasks without end)
    batch_size: dict[str, PositiveInt] = {"mead": 4, "lrw": 16}
    # How a clip's raw files are judged unchanged for reuse: size and mtime (no reads), or a
    # content hash of the files (and every reused output member), for stores that keep mtimes
    # across rewrites (docs/operations.md has the cost per GB).
    verify_inputs: Literal["mtime", "content"] = "mtime"

    @field_validator("batch_size")
    @classmethod
    def _known_datasets(cls, value: dict[str, int]) -> dict[str, int]:
        """A misspelt dataset (``lwr: 16``) left lrw at the flow's default without a word."""
        from eamm.stages import DATASETS  # lazy: nothing of the stages is needed elsewhere here

        for name in value:
            if name not in DATASETS:
                raise ValueError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
        return value


class TrainerParams(Strict):
    """Machinery shared by the training stages (none of it changes what is learned)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:1
    bf16: bool = True  # autocast on GPUs that support bf16
    channels_last: bool = True  # on GPUs
    # NHWC on the CPU too (ours; off by default): the tiny profile's 64-px convolutions step
    # 1.1-1.25x faster on AVX2 cores (benchmarks/train_step.py); float rounding differs.
    channels_last_cpu: bool = False
    compile: bool = False  # torch.compile the trainable modules
    seed: Seed = 0
    num_workers: int = 2  # DataLoader worker processes
    # Decoded clips kept in memory per process (MB): a small dataset is decoded once.
    frame_cache_mb: int = Field(0, ge=0)
    # Frozen teachers in eval mode (ours) or in train mode like EAMM (BatchNorm batch stats);
    # either way under no_grad and excluded from the optimisers.
    frozen_eval: bool = True
    # Training processes (DDP via torchrun); null = one per visible GPU, 1 on CPU.
    processes: int | None = Field(None, ge=1)


Beta = Annotated[float, Field(ge=0, lt=1)]  # an Adam moment's decay


def _each_once(values: list) -> list:
    """A dataset named twice would be read (trained on, scored) twice."""
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} listed more than once")
    return values


Datasets = Annotated[list[Literal["mead", "lrw"]], Field(min_length=1), AfterValidator(_each_once)]
Splits = Annotated[
    list[Literal["train", "val", "test"]], Field(min_length=1), AfterValidator(_each_once)
]


class StageParams(Strict):
    """One training stage's length, batch, optimiser schedule and loss weights.

    The length is ``steps``, or EAMM's/FOMM's ``num_epochs`` x ``num_repeats`` passes over the
    stage's training clips (one clip per sample, drop_last), turned into steps for the clips in
    the manifest when the stage starts (``eamm.train.recipe.in_steps``), with ``epoch_milestones``
    turned into ``milestones`` the same way.
    """

    steps: int | None = Field(None, ge=1)
    num_epochs: int | None = Field(None, ge=1)
    num_repeats: int = Field(1, ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(2e-4, gt=0)
    betas: tuple[Beta, Beta] = (0.5, 0.999)
    milestones: list[int] = []  # steps at which the learning rate is multiplied by gamma
    epoch_milestones: list[int] = []  # the same in epochs (with num_epochs)
    gamma: float = Field(0.1, gt=0)
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)
    sample_every: int = Field(500, ge=1)
    clip_len: int = Field(16, ge=1)
    datasets: Datasets = ["lrw"]
    splits: Splits = ["train"]
    # Per stage, as in EAMM's and FOMM's configs; `perceptual` = one weight per VGG19 layer
    # (FOMM: [10]*5; EAMM's fine-tune: [0.1]*5).
    loss_weights: dict[str, float | list[float]] = {}
    jitter: float = 0.0  # colour jitter (brightness, contrast, saturation, hue)
    # FOMM's pairs: mirror both frames / swap source and driving, each with p 0.5 (vox-256: on).
    hflip: bool = False
    time_flip: bool = False
    # FOMM's pairs: probability that a MEAD pair's source is a frame of a neutral clip of the
    # same speaker (ours; FOMM: 0, both frames from one clip). eamm.train.datasets.FommPairs
    neutral_source: float = Field(0.0, ge=0, le=1)
    rotation: float = 30.0
    num_emotion_kp: int = Field(4, ge=1)  # at most the profile's keypoints (the build checks)
    classify: bool = True
    # Stage 3's keypoint loss over the emotion keypoints: summed as EAMM does, or averaged.
    kp_reduction: Literal["sum", "mean"] = "sum"
    # Stage 2 continues stage 1's Adam state (moments and step count) as EAMM does.
    resume_optimizer: bool = True
    # The judges (emotion classifier, sync expert): held-out splits they report accuracy on,
    # the sync expert's negative-pair distance and offset search range (frames).
    holdout_splits: list[Literal["train", "val", "test"]] = []
    min_offset: int = Field(3, ge=1)
    stretch: float = Field(0.0, ge=0, lt=1)  # emotion judge: random width/height scale
    blur: float = Field(0.0, ge=0, lt=0.5)  # emotion judge: max Gaussian sigma / frame width
    vshift: int = Field(15, ge=1)

    @model_validator(mode="after")
    def _one_length(self) -> StageParams:
        if (self.steps is None) == (self.num_epochs is None):
            raise ValueError("set either steps or num_epochs")
        if self.epoch_milestones and self.num_epochs is None:
            raise ValueError("epoch_milestones need num_epochs (or give milestones in steps)")
        if self.milestones and self.num_epochs is not None:
            raise ValueError("with num_epochs, give epoch_milestones (milestones are in steps)")
        return self


class PerceptualParams(Strict):
    """Where the perceptual loss's VGG19 comes from (``model.perceptual``)."""

    vgg_weights: str | None = None
    standin_profiles: list[str] = []


class SizeProfile(Strict):
    """One ``model.profiles`` entry: the networks' hyper-parameters, keyed like FOMM's and
    EAMM's YAML (each network's keys are checked by its constructor)."""

    image_size: int = Field(ge=16)
    perceptual_scales: list[float] = Field(min_length=1)
    common: dict[str, Any]
    kp_detector: dict[str, Any]
    generator: dict[str, Any]
    audio: dict[str, Any]
    audio_head: dict[str, Any]
    emotion: dict[str, Any]

    @model_validator(mode="after")
    def _audio_feeds_its_head(self) -> SizeProfile:
        """The audio network's output is the keypoint head's input (its ``block_expansion`` +
        ``num_channels_a`` channels; the constructors' defaults where unset): an edit to one
        side failed inside stage 1 with a bare RuntimeError on tensor sizes."""
        made = self.audio.get("out_features", 35)
        head = self.audio_head
        widths = (head.get("block_expansion", 32), head.get("num_channels_a", 3))
        if not all(type(v) is int for v in (made, *widths)):
            raise ValueError(
                "audio.out_features, audio_head.block_expansion and audio_head.num_channels_a "
                "must be whole numbers"
            )
        taken = sum(widths)
        if made != taken:
            raise ValueError(
                f"audio.out_features ({made}) must equal audio_head.block_expansion + "
                f"num_channels_a ({taken}): the audio network's output is its head's input"
            )
        return self


class ModelParams(Strict):
    """The ``model`` section: the active size profile and the perceptual loss's VGG19."""

    profile: str
    perceptual: PerceptualParams = PerceptualParams()
    profiles: dict[str, SizeProfile] = Field(min_length=1)

    @model_validator(mode="after")
    def _profile_exists(self) -> ModelParams:
        if self.profile not in self.profiles:
            raise ValueError(f"profile '{self.profile}' is not in profiles {sorted(self.profiles)}")
        return self


class JudgeSizes(Strict):
    emotion_classifier: dict[str, Any]
    sync_expert: dict[str, Any]


class JudgesParams(Strict):
    """The ``judges`` section: the judges' sizes per model profile (ours; EAMM names none)."""

    profiles: dict[str, JudgeSizes] = Field(min_length=1)


class GenerateParams(Strict):
    """Inference (reference section 4); EAMM's constants are the defaults unless noted."""

    audio_weight: float = 1.6  # multiplies the audio feature (EAMM's demo: 1.6; training: 1)
    # Scale of each emotion displacement row. EAMM's demo: [0.2, 1, 1, 0] for its keypoints
    # 1/4/6/8 (training used 1 for all four); ours default to the training value.
    emotion_scale: list[float] = [1.0, 1.0, 1.0, 1.0]
    audio_kp_smoothing: tuple[float, float, float] = (0.05, 8.0, 10.0)  # mincutoff, beta, prescale
    emotion_smoothing: tuple[float, float, float] = (1.0, 0.2, 100.0)
    pose_smoothing: tuple[float, float] = (0.004, 0.7)  # mincutoff, beta
    generator_from: Literal["fomm", "finetune"] = "fomm"  # EAMM renders with the FOMM generator
    relative: bool = False  # FOMM's relative mode: keypoint motion since the first frame
    # With ``relative``: move the jacobians by their change since the first frame (FOMM,
    # EAMM) or keep the source's (ours: an undertrained audio branch's jacobians tilt the face).
    relative_jacobian: bool = True
    seed: Seed = 0  # emotion-video augmentation
    batch_size: int = Field(16, ge=1)  # frames rendered per generator call
    device: str = "auto"
    crf: int = Field(18, ge=0, le=51)
    # Speed of the renderer (the generator, ~95 % of the networks' time; benchmarks/generate.py,
    # docs/performance.md). The defaults are plain fp32 in NCHW, eager: the outputs of before.
    # bf16: the generator under torch.autocast on the device (keypoint networks stay fp32).
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False  # the generator's weights and activations in NHWC
    # torch.compile the generator (every batch padded to batch_size: one shape, one compile)
    torch_compile: bool = False


# `generate` settings only `eamm generate` reads: the evaluation drives with each clip's own pose
# rows as stored (no One Euro on them), seeds the emotion source's augmentation with
# `evaluate.seed` and scores frames before any encoding; the report leaves them out, and the
# DVC stage `evaluate` tracks the others one by one (``EVALUATED_GENERATE``).
GENERATION_ONLY = frozenset({"pose_smoothing", "seed", "crf"})
EVALUATED_GENERATE = tuple(k for k in GenerateParams.model_fields if k not in GENERATION_ONLY)


class EvaluationProtocol(Strict):
    """One named evaluation protocol (``evaluate.protocols.<name>``): everything that moves a
    published number (docs/evaluation.md). The defaults are this project's own, ``ours``."""

    # Which clips and frames
    mead_speakers: list[str] | None = None  # MEAD speakers scored; null = all of the split
    max_clips: int | None = Field(None, ge=1)  # per dataset, a seeded sample; null = all
    # per clip, from its start; null = whole clip. At least 2: the frames are scored against
    # the first (one frame has no motion and only the source's own pixels)
    max_frames: int | None = Field(100, ge=2)
    # The identity image: the first frame of the speaker's first neutral test clip (``neutral``:
    # the source carries no emotion of its own) or of the clip itself (``own``).
    source_frame: Literal["neutral", "own"] = "neutral"
    # Whether PSNR, SSIM and LMD take a clip's first frame where it is the identity image
    # (LRW clips, neutral MEAD clips, ``own``): every variant reproduces it nearly exactly and
    # ``static_source`` exactly (100 dB). EAT's scripts and FOMM's reconstruction score
    # every frame (true); false leaves it out.
    score_source_frame: bool = True
    # Frames PSNR/SSIM compare: the aligned crops at the model's resolution (``aligned``), or
    # each frame aligned on its dlib-68 points into a 128-pixel crop (``dlib128``, EAT's).
    image_crop: Literal["aligned", "dlib128"] = "aligned"
    # 68 iBUG points for LMD: the mediapipe mesh mapped to 68 points, or dlib's predictor
    landmarker: Literal["mediapipe", "dlib68"] = "mediapipe"
    landmark_size: int = Field(256, ge=64)  # frames are resized to this before the landmarker
    # LMD on the points as found, or each frame's points centred on their mean first (EAT's)
    lmd_centred: bool = False
    # SSIM windows: Wang et al. 2004 (Gaussian sigma 1.5, population covariance) or
    # scikit-image's defaults (7x7 uniform, sample covariance; EAT's ``compare_ssim``)
    ssim: Literal["gaussian", "uniform7"] = "gaussian"
    # SyncNet's input: the frames resized to 224 (``aligned``), or PC-AVS's 224 crop aligned on
    # the eyes and the mouth (``pcavs224``, EAT's)
    sync_crop: Literal["aligned", "pcavs224"] = "aligned"
    vshift: int = Field(15, ge=1)  # lip-sync offset search range, frames (SyncNet's -vshift)
    # Video frames the audio is delayed against the frames when the sync judges score it
    audio_offset: int = Field(0, ge=-25, le=25)

    @model_validator(mode="after")
    def _needs_dlib_points(self) -> EvaluationProtocol:
        if self.image_crop == "dlib128" and self.landmarker != "dlib68":
            raise ValueError("image_crop dlib128 aligns on dlib's points: needs landmarker dlib68")
        return self


class EvaluationCaps(Strict):
    """A cap on a protocol's clips per dataset and frames per clip, for a quick check (the
    report says so); null = the protocol's own."""

    max_clips: int | None = Field(None, ge=1)
    max_frames: int | None = Field(None, ge=2)


class EvaluateParams(EvaluationCaps):
    """The evaluation: a named protocol (``protocol``, defined under ``protocols``) run over
    the test clips of ``datasets`` (docs/evaluation.md)."""

    datasets: Datasets = ["mead", "lrw"]
    split: Literal["train", "val", "test"] = "test"
    seed: Seed = 0
    # Local SyncNet v2 weights (syncnet_v2.model); null = only our own sync expert's score.
    syncnet_weights: str | None = None
    # Local FID Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth); null =
    # no FID (it is never computed with a stand-in network).
    fid_weights: str | None = None
    protocols: dict[str, EvaluationProtocol] = Field(
        default_factory=lambda: {"ours": EvaluationProtocol()}, min_length=1
    )
    protocol: str = "ours"  # validated after ``protocols``: a name defined there

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str, info: ValidationInfo) -> str:
        known = info.data.get("protocols")
        if known is not None and value not in known:
            raise ValueError(f"unknown protocol '{value}' (known: {', '.join(sorted(known))})")
        return value

    def with_caps(self, caps: EvaluationCaps) -> EvaluateParams:
        """These params with ``caps`` laid on (the smaller of two caps wins): a recipe's own
        cap (``recipes.demo.evaluate``) and this section's."""
        return self.model_copy(
            update={
                "max_clips": _cap(self.max_clips, caps.max_clips),
                "max_frames": _cap(self.max_frames, caps.max_frames),
            }
        )

    def resolved(self) -> EvaluationProtocol:
        """The protocol this run follows, with ``max_clips``/``max_frames`` caps applied."""
        chosen = self.protocols[self.protocol]
        return chosen.model_copy(
            update={
                "max_clips": _cap(chosen.max_clips, self.max_clips),
                "max_frames": _cap(chosen.max_frames, self.max_frames),
            }
        )

    @property
    def capped(self) -> bool:
        """Whether a cap cuts the protocol's clips or frames (not the full protocol)."""
        return self.resolved() != self.protocols[self.protocol]


def _cap(own: int | None, cap: int | None) -> int | None:
    if cap is None:
        return own
    return cap if own is None else min(own, cap)
