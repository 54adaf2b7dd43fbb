"""Import EAMM's released checkpoints into this project's checkpoint format.

EAMM's ``log.zip`` (``eamm-reference.md`` 3.0, 4) holds three files; each becomes the
``checkpoint.pt`` of one stage folder (``eamm.stages.STAGE_DIRS``) under ``out_root``:

=================  =============  =============  =============  ===============================
EAMM file          stage folder   stage          model name     our network (EAMM class)
=================  =============  =============  =============  ===============================
124_52000.pth.tar  fomm           train_fomm     kp_detector    KPDetector (KPDetector)
                                                 generator      OcclusionAwareGenerator (same)
1-6000.pth.tar     a2fd_finetune  finetune_a2fd  audio_feature  AudioToFacialDynamics (AT_net2)
                                                 kp_detector_a  AudioKeypointHead (KPDetector_a)
5-3000.pth.tar     emotion        train_emotion  emo_detector   EmotionDisplacement (Emotion_k)
=================  =============  =============  =============  ===============================

The model names are the EAMM checkpoint's top-level keys and our ``models`` keys alike. Parameter
names are EAMM's/FOMM's, so the mapping inside each state dict is the identity after these steps
(reference 2.10):

- every model: a leading ``module.`` (DataParallel) is stripped from each key;
- ``audio_feature``: ``generator.*`` dropped (AT_net's StyleGAN2 generator, used only by the
  never-selected ``jaco_net: gan`` path);
- ``kp_detector_a``: ``predictor.*`` and ``down.*`` dropped (KPDetector_a's unused Hourglass and
  anti-alias filter; only the ``kp.*`` / ``jacobian.*`` heads are live);
- ``emo_detector``: ``fc.*``, ``fc_n.*``, ``final_4.*`` and ``final_10.*`` dropped (Emotion_k's
  dead layers; ``fc_p``, ``fc_all``, ``final`` and ``classify`` are kept).

Dropped as well, because nothing downstream reads them: the FOMM file's ``discriminator`` and
``optimizer_*`` entries, the audio file's ``generator`` (EAMM's demo renders with the FOMM
generator, reference 4) and optimiser, and the emotion file's ``audio_feature`` /
``kp_detector_a`` (BN statistics drifted in stage 3, reference 3.4) and optimisers.

After filtering, each state dict must load with ``strict=True`` into our reference-size network
(default constructor arguments); any missing, unexpected or mis-shaped key is an ``EammError``.
Each written payload has: ``stage``, ``step`` (the source's ``step``, else its ``epoch``, else 0),
``models`` (the loaded networks' state dicts), empty ``optimizers`` / ``schedulers``, ``params``
``{"model": {"profile": "reference", "imported_from": <file name>}}``, ``manifest_fingerprint``
``"eamm-release"`` (so training never resumes from it), ``history`` ``[]`` and ``source_sha256``
(of the imported file). The emotion payload also records ``emotion_kp`` ``[1, 4, 6, 8]`` (the FOMM
keypoints EAMM's four displacement rows belong to, reference 3.4) and ``emotion_kp_source``
``"eamm-release"``. Sources are read with ``torch.load(weights_only=True)`` only: a pickle with
non-tensor objects is refused, never loaded with ``weights_only=False``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from eamm.checkpoint import save_checkpoint
from eamm.errors import EammError
from eamm.models import (
    AudioKeypointHead,
    AudioToFacialDynamics,
    EmotionDisplacement,
    KPDetector,
    OcclusionAwareGenerator,
)
from eamm.stages import CHECKPOINT_NAME, STAGE_DIRS

__all__ = ["EAMM_EMOTION_KP", "IMPORT_FINGERPRINT", "import_eamm_release"]

EAMM_EMOTION_KP = [1, 4, 6, 8]
IMPORT_FINGERPRINT = "eamm-release"
_MAX_LISTED = 5


@dataclass(frozen=True)
class _Model:
    build: Callable[[], nn.Module]
    dead_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Source:
    stage: str
    folder: str
    models: dict[str, _Model]
    extra: dict = field(default_factory=dict)


_SOURCES = {
    "fomm": _Source(
        stage="train_fomm",
        folder=STAGE_DIRS["train_fomm"],
        models={"kp_detector": _Model(KPDetector), "generator": _Model(OcclusionAwareGenerator)},
    ),
    "audio": _Source(
        stage="finetune_a2fd",
        folder=STAGE_DIRS["finetune_a2fd"],
        models={
            "audio_feature": _Model(AudioToFacialDynamics, ("generator.",)),
            "kp_detector_a": _Model(AudioKeypointHead, ("predictor.", "down.")),
        },
    ),
    "emotion": _Source(
        stage="train_emotion",
        folder=STAGE_DIRS["train_emotion"],
        models={
            "emo_detector": _Model(EmotionDisplacement, ("fc.", "fc_n.", "final_4.", "final_10."))
        },
        extra={"emotion_kp": EAMM_EMOTION_KP, "emotion_kp_source": IMPORT_FINGERPRINT},
    ),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _load_reason(err: Exception) -> str:
    """The informative line of a ``torch.load`` error (the weights-only one is a long essay)."""
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
        text = text.split(" Please use", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'no message'}"


def _load_source(path: Path) -> dict:
    if not path.is_file():
        raise EammError(f"{path}: EAMM checkpoint does not exist")
    try:
        with warnings.catch_warnings():  # torch warns of a pickle's protocol before refusing
            warnings.simplefilter("ignore")
            source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # non-tensor pickles and corrupt files alike
        raise EammError(
            f"{path}: cannot load safely with weights_only=True ({_load_reason(err)})"
        ) from None
    if not isinstance(source, dict):
        raise EammError(f"{path}: not an EAMM checkpoint (a {type(source).__name__}, not a dict)")
    return source


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def _shape(value: object) -> tuple | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _fits(value: object, target: torch.Tensor) -> bool:
    """Whether ``load_state_dict`` copies ``value`` into ``target`` (it also accepts a (1,) tensor
    for a 0-dim buffer: legacy ``num_batches_tracked``)."""
    shape = _shape(value)
    return shape == tuple(target.shape) or (target.ndim == 0 and shape == (1,))


def _filtered(state: dict, dead_prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not key.startswith(dead_prefixes):
            out[key] = value
    return out


def _import_model(path: Path, source: dict, name: str, model: _Model) -> dict:
    state = source.get(name)
    if not isinstance(state, dict):
        found = _listed(sorted(map(str, source)))
        raise EammError(f"{path}: no '{name}' state dict (top-level keys: {found})")
    state = _filtered(state, model.dead_prefixes)
    net = model.build()
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key} {_shape(state[key])} != {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and not _fits(state[key], value)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if mismatched:
        problems.append(f"shape {_listed(mismatched)}")
    if problems:
        raise EammError(f"{path}: '{name}' does not match our network: {'; '.join(problems)}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:  # anything the checks above missed
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise EammError(f"{path}: '{name}' does not match our network: {reason}") from None
    return net.state_dict()


def _step(source: dict) -> int:
    for key in ("step", "epoch"):
        value = source.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return int(value.item())
    return 0


def _payload(path: Path, spec: _Source) -> dict:
    source = _load_source(path)
    models = {name: _import_model(path, source, name, m) for name, m in spec.models.items()}
    return {
        "stage": spec.stage,
        "step": _step(source),
        "models": models,
        "optimizers": {},
        "schedulers": {},
        "params": {"model": {"profile": "reference", "imported_from": path.name}},
        "manifest_fingerprint": IMPORT_FINGERPRINT,
        "history": [],
        "source_sha256": _sha256(path),
        **spec.extra,
    }


def import_eamm_release(
    fomm: str | Path,
    audio: str | Path | None,
    emotion: str | Path | None,
    out_root: str | Path,
    replace: bool = False,
) -> dict[str, Path]:
    """Convert EAMM's released checkpoints into ``<out_root>/<stage folder>/checkpoint.pt``.

    ``fomm`` is ``124_52000.pth.tar``, ``audio`` ``1-6000.pth.tar`` and ``emotion``
    ``5-3000.pth.tar`` (the last two optional). All given files are loaded and validated before
    anything is written; each checkpoint is written atomically. A checkpoint already in place
    (the default ``out_root`` is the project's ``models``, where training writes) is replaced
    only with ``replace``. Returns the written paths keyed by stage folder (``fomm``,
    ``a2fd_finetune``, ``emotion``).
    """
    given = {"fomm": fomm, "audio": audio, "emotion": emotion}
    payloads = {
        key: _payload(Path(path), _SOURCES[key]) for key, path in given.items() if path is not None
    }
    targets = {key: Path(out_root) / _SOURCES[key].folder / CHECKPOINT_NAME for key in payloads}
    present = [path for path in targets.values() if path.exists()]
    if present and not replace:
        more = f" (and {len(present) - 1} more)" if len(present) > 1 else ""
        raise EammError(
            f"{present[0]}: a checkpoint is already there{more}; import into another --out, "
            "or pass --replace to overwrite it"
        )
    return {
        _SOURCES[key].folder: save_checkpoint(payload, targets[key])
        for key, payload in payloads.items()
    }
