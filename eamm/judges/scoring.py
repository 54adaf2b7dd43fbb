"""The evaluation judges at scoring time: our emotion classifier and sync expert (trained by
the pipeline) and, when the user has its weights, SyncNet v2. Each judge is optional: a missing
checkpoint leaves its metrics empty (None in metrics.json) instead of failing the evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from eamm.checkpoint import load_checkpoint
from eamm.errors import EammError
from eamm.judges import EmotionClassifier, SyncExpert, SyncNetV2
from eamm.judges.emotion import predict_emotion, spread
from eamm.judges.sync import expert_score, load_syncnet, syncnet_score
from eamm.stages import checkpoint_path
from eamm.tensors import to_tensor

JUDGE_METRICS = ("emotion_acc", "sync_conf", "sync_dist", "syncnet_conf", "syncnet_dist")
CLASSIFIER_FRAMES = 16  # frames per clip the classifier sees, spread evenly


@dataclass
class Judges:
    classifier: EmotionClassifier | None = None
    classifier_size: int = 0
    expert: SyncExpert | None = None
    expert_size: int = 0
    syncnet: SyncNetV2 | None = None
    vshift: int = 15
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


# The pipeline's own judges, by training stage: what each is called and the columns it fills.
# A judge without a checkpoint leaves its columns empty (None), and a note says so.
PIPELINE_JUDGES = {
    "train_emotion_classifier": ("emotion classifier", ("emotion_acc",)),
    "train_sync_expert": ("sync expert", ("sync_conf", "sync_dist")),
}


def missing_judges(checkpoints: str | Path) -> dict[str, Path]:
    """The pipeline's judges without a checkpoint: stage -> the file looked for."""
    paths = {stage: checkpoint_path(checkpoints, stage) for stage in PIPELINE_JUDGES}
    return {stage: path for stage, path in paths.items() if not path.is_file()}


def missing_judge_note(stage: str, path: str | Path) -> str:
    """One line: which columns a judge without a checkpoint leaves empty, and why."""
    name, columns = PIPELINE_JUDGES[stage]
    shown = f"column {columns[0]} is" if len(columns) == 1 else f"columns {', '.join(columns)} are"
    return f"the {name}'s {shown} empty: {path} is missing (stage {stage})"


def _load(path: Path, cls, stage: str, key: str, device: torch.device):
    """A judge's network from its stage's checkpoint; a checkpoint of another stage, or one
    that does not build this network, is one line naming the file."""
    name = PIPELINE_JUDGES[stage][0]
    state = load_checkpoint(path, device)
    found = state.get("stage") if isinstance(state, dict) else None
    models = state.get("models") if isinstance(state, dict) else None
    if found not in (None, stage) or not isinstance(models, dict) or key not in models:
        why = f"a {found} checkpoint" if found not in (None, stage) else f"no {key} network"
        article = "an" if name[0] in "aeiou" else "a"
        raise EammError(f"{path}: not {article} {name} checkpoint ({why})")
    try:
        net = cls(**state["sizes"])
        net.load_state_dict(models[key])
        size = int(state["image_size"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = next(iter(str(err).splitlines()), type(err).__name__)[:160]
        raise EammError(
            f"{path}: {name} checkpoint does not match the network ({reason})"
        ) from None
    return net.to(device).eval(), size


def load_judges(
    checkpoints: str | Path, device: torch.device, vshift: int, syncnet_weights: str | None
) -> Judges:
    """The judges that have a checkpoint (``missing_judges`` names the others) and SyncNet v2
    when its weights are given."""
    judges = Judges(vshift=vshift, device=device)
    root = Path(checkpoints)
    classifier = checkpoint_path(root, "train_emotion_classifier")
    if classifier.is_file():
        judges.classifier, judges.classifier_size = _load(
            classifier, EmotionClassifier, "train_emotion_classifier", "emotion_classifier", device
        )
    expert = checkpoint_path(root, "train_sync_expert")
    if expert.is_file():
        judges.expert, judges.expert_size = _load(
            expert, SyncExpert, "train_sync_expert", "sync_expert", device
        )
    if syncnet_weights:
        judges.syncnet = load_syncnet(syncnet_weights, device)
    return judges


def _resized(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


@torch.no_grad()
def judge_scores(
    judges: Judges,
    frames: np.ndarray,
    mfcc: np.ndarray,
    audio_16k: np.ndarray | None,
    emotion: str | None,
) -> dict[str, float]:
    """The judges' scores of one clip: uint8 RGB frames (T, H, W, 3), their MFCC windows
    (T, 28, 12) and 16 kHz audio; NaN where a judge or an input is missing."""
    nan = float("nan")
    scores = dict.fromkeys(JUDGE_METRICS, nan)
    device = judges.device
    if judges.classifier is not None and emotion is not None:
        picks = spread(len(frames), CLASSIFIER_FRAMES)
        clip = to_tensor(_resized(frames[picks], judges.classifier_size)).to(device)
        scores["emotion_acc"] = float(predict_emotion(judges.classifier, clip) == emotion)
    if judges.expert is not None:
        clip = to_tensor(_resized(frames, judges.expert_size)).to(device)
        audio = torch.from_numpy(np.ascontiguousarray(mfcc, dtype=np.float32)).to(device)
        score = expert_score(judges.expert, clip, audio, judges.vshift)
        if score is not None:
            scores["sync_conf"], scores["sync_dist"] = score.confidence, score.min_dist
    if judges.syncnet is not None and audio_16k is not None:
        score = syncnet_score(judges.syncnet, frames, audio_16k, judges.vshift)
        if score is not None:
            scores["syncnet_conf"], scores["syncnet_dist"] = score.confidence, score.min_dist
    return scores
