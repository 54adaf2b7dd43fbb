"""Evidence that each stage learned: the judges' held-out numbers, every stage's loss at the
start and end of training, and the relations the evaluation must show against its baselines.

The relations are checked on ``reports/metrics.json`` (by the report and by a test of the
committed demo report), so a claim in the README is a number from a real run next to a baseline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eamm.checkpoint import load_checkpoint, peek_checkpoint
from eamm.config import MEAD_EMOTIONS
from eamm.errors import EammError
from eamm.stages import STAGE_DIRS, checkpoint_path

# Far above chance: the sync expert's held-out offset accuracy is at least this many times
# chance (chance = one offset out of 2 * vshift + 1).
SYNC_OVER_CHANCE = 5.0
EMOTION_JUDGE_MIN = 0.8
# "Clearly above": the emotion variant's emotion accuracy beats the neutral variant's by this.
EMOTION_MARGIN = 0.2
# Stage 3's own classifier names the held-out clips' emotion at this many times chance (1/8).
STAGE3_OVER_CHANCE = 2.0
# Stage 2 fine-tunes the audio branch through the renderer on LRW (EAMM's and the demo's
# `finetune_a2fd.datasets`): its frames are judged against stage 1's there.
STAGE2_DATASET = "lrw"


def _metrics(folder: Path) -> dict:
    """A stage's metrics.json ({} where there is none); a damaged one is named."""
    path = folder / "metrics.json"
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EammError(f"{path}: not JSON ({err}); train the stage again or restore it") from None
    if not isinstance(values, dict):
        raise EammError(f"{path}: a JSON {type(values).__name__}, not the stage's metrics")
    return values


def metrics_mismatch(checkpoint: Path, values: dict) -> str:
    """Why a stage's metrics.json (``values``) is not ``checkpoint``'s run ("" where it is,
    or where there is no checkpoint to tell): its final step and loss are the checkpoint's
    last history entry. The checkpoint is DVC-cached, metrics.json kept in git: a restored or
    copied checkpoint came without its own, and another run's held-out numbers were shown."""
    if not values or not checkpoint.is_file():
        return ""
    history = peek_checkpoint(checkpoint).get("history") or []
    last = history[-1] if history else {}
    pairs = [(key, values.get(key), last.get(key)) for key in ("step", "loss/total")]
    if all(theirs == ours for _, theirs, ours in pairs):
        return ""
    said = ", ".join(f"{key} {theirs}" for key, theirs, _ in pairs)
    found = ", ".join(f"{key} {ours}" for key, _, ours in pairs)
    return f"{checkpoint.with_name('metrics.json')} ({said}) is not {checkpoint}'s run ({found})"


def judge_summary(checkpoints: Path, vshift: int) -> dict:
    """The judges' own held-out numbers (from their training stages' metrics.json); where
    that file is another run's than the judge's checkpoint (``metrics_mismatch``), none, and
    ``other_run`` says why."""
    chances = {"emotion_classifier": round(1 / 8, 4), "sync_expert": round(1 / (2 * vshift + 1), 4)}
    keys = {"emotion_classifier": "accuracy", "sync_expert": "offset_accuracy"}
    summary = {}
    for stage in ("train_emotion_classifier", "train_sync_expert"):
        name = STAGE_DIRS[stage]
        values = _metrics(checkpoints / name)
        other = metrics_mismatch(checkpoint_path(checkpoints, stage), values)
        found = {} if other else values
        summary[name] = {
            f"heldout_{keys[name]}": found.get(f"heldout/{keys[name]}"),
            "heldout_clips": found.get("heldout/clips"),
            "chance": chances[name],
        } | ({"other_run": other} if other else {})
    return summary


def training_summary(checkpoints: Path, window: float = 0.1, min_steps: int = 10) -> dict:
    """Per trained stage: steps, mean total loss over the first and the last ``window`` of its
    steps (at least ``min_steps``, up to half: a short stage's 4 steps at batch 2 are noise),
    and which VGG19 its perceptual loss used (where it has one)."""
    summary = {}
    for stage, name in STAGE_DIRS.items():
        path = checkpoint_path(checkpoints, stage)
        if not path.is_file():
            continue
        state = load_checkpoint(path, "cpu")
        losses = np.array([h["loss/total"] for h in state.get("history", [])], dtype=np.float64)
        if not len(losses):
            continue
        n = max(1, int(len(losses) * window), min(min_steps, len(losses) // 2))
        summary[name] = {
            "steps": int(state["step"]),
            "loss_first": round(float(losses[:n].mean()), 4),
            "loss_last": round(float(losses[-n:].mean()), 4),
        }
        if state.get("perceptual_vgg"):
            summary[name]["perceptual_vgg"] = state["perceptual_vgg"]
    return summary


@dataclass(frozen=True)
class Relation:
    claim: str
    holds: bool
    detail: str
    # False where the run did not produce what the claim compares (a variant without its
    # stage's checkpoint, a judge without its own, a speaker without a neutral clip): the
    # claim is neither shown to hold nor to fail.
    measured: bool = True

    @property
    def verdict(self) -> str:
        return "not measured" if not self.measured else "yes" if self.holds else "**no**"


def count_line(checks: list[Relation]) -> str:
    """How many relations hold ("17/24 hold"), those the run did not measure said apart."""
    measured = [r for r in checks if r.measured]
    unmeasured = len(checks) - len(measured)
    return f"{sum(r.holds for r in measured)}/{len(measured)} hold" + (
        f" ({unmeasured} not measured)" if unmeasured else ""
    )


def _value(metrics: dict, dataset: str, variant: str, metric: str) -> float | None:
    return metrics.get(dataset, {}).get(variant, {}).get(metric)


def _has(metrics: dict, dataset: str, *variants: str) -> bool:
    """Whether the run scored every one of ``variants`` on ``dataset``."""
    return all(v in metrics.get(dataset, {}) for v in variants)


def _judged(judges: dict, name: str) -> bool:
    """Whether the judge ran (a judge without its checkpoint is ``missing_checkpoint``)."""
    return "missing_checkpoint" not in judges.get(name, {})


def _held_out(judges: dict, name: str) -> bool:
    """Whether the judge's own held-out numbers are known: it ran and its metrics.json is its
    checkpoint's (``other_run`` where not)."""
    return _judged(judges, name) and "other_run" not in judges.get(name, {})


def _greater(a: float | None, b: float | None, margin: float = 0.0) -> bool:
    return a is not None and b is not None and a > b + margin


def _clips(metrics: dict, dataset: str, variant: str, metric: str) -> int | None:
    """How many clips ``metric``'s mean is over (``aggregate``'s ``<metric>_clips`` where
    some clips have no value); None where there is no mean."""
    values = metrics.get(dataset, {}).get(variant, {})
    if values.get(metric) is None:
        return None
    return values.get(f"{metric}_clips", values.get("clips"))


def clip_scores_beside(metrics_file: Path) -> list[dict] | None:
    """The ``clip_scores.json`` written with ``metrics_file`` (``relations``' pairing), None
    where there is none to read."""
    try:
        rows = json.loads(metrics_file.with_name("clip_scores.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rows if isinstance(rows, list) else None


def _per_clip(
    clip_scores: Sequence[dict] | None, metrics: dict, dataset: str, variant: str, metric: str
) -> dict | None:
    """{clip_id: value} of one variant's metric in ``clip_scores.json``'s rows, where it has
    a finite one; None without rows, or where they are not the ones ``metrics`` was made of
    (another count or mean: a file left by another run)."""
    if clip_scores is None:
        return None
    values = {
        row["clip_id"]: float(row["scores"][metric])
        for row in clip_scores
        if row.get("dataset") == dataset
        and row.get("variant") == variant
        and isinstance(row.get("scores", {}).get(metric), int | float)
        and math.isfinite(row["scores"][metric])
    }
    mean = round(float(np.mean(list(values.values()))), 4) if values else None
    if len(values) != _clips(metrics, dataset, variant, metric) or mean != _value(
        metrics, dataset, variant, metric
    ):
        return None
    return values


def _compared(
    claim: str,
    metrics: dict,
    value: tuple[str, str, str],
    baseline: tuple[str, str, str],
    higher: bool,
    measured: bool = True,
    clip_scores: Sequence[dict] | None = None,
) -> Relation:
    """The mean of ``value`` (dataset, variant, metric) better than ``baseline``'s (``higher``
    or lower is better); both in the detail. Two means over different clips (a metric some
    clips have no value of: no face found, no neutral clip) were compared as they were: the
    gap was the clips one side left out (a stage 3 that read nothing "held" by 0.93 px). With
    the run's ``clip_scores``, both are taken over the clips both have; without them, means
    over different numbers of clips are not measured (equal numbers are taken as the same
    clips, which only the per-clip rows can tell)."""
    a, b = _value(metrics, *value), _value(metrics, *baseline)
    holds = _greater(a, b) if higher else _greater(b, a)
    counts = _clips(metrics, *value), _clips(metrics, *baseline)
    mine, theirs = (_per_clip(clip_scores, metrics, *key) for key in (value, baseline))
    if mine is not None and theirs is not None and mine.keys() != theirs.keys():
        both = sorted(mine.keys() & theirs.keys())
        if not both:
            detail = f"{a} vs {b} (over {counts[0]} and {counts[1]} clips, none in common)"
            return Relation(claim, False, detail, False)
        a = round(float(np.mean([mine[c] for c in both])), 4)
        b = round(float(np.mean([theirs[c] for c in both])), 4)
        holds = _greater(a, b) if higher else _greater(b, a)
        paired = f"over the {len(both)} clips both have, of {counts[0]} and {counts[1]}"
        return Relation(claim, holds, f"{a} vs {b} ({paired})", measured)
    unpaired = mine is None or theirs is None
    if unpaired and None not in counts and counts[0] != counts[1]:
        detail = f"{a} vs {b} (over {counts[0]} and {counts[1]} clips: not the same clips)"
        return Relation(claim, False, detail, False)
    return Relation(claim, holds, f"{a} vs {b}", measured)


def relations(metrics: dict, clip_scores: Sequence[dict] | None = None) -> list[Relation]:
    """The relations a working pipeline shows on the held-out test clips (issue #13);
    ``clip_scores`` (the run's ``clip_scores.json``) pairs means over different clips."""
    out: list[Relation] = []
    datasets = [d for d in ("mead", "lrw") if d in metrics]
    judges = metrics.get("judges", {})
    for d in datasets:
        static = (d, "static_source")
        for metric in ("psnr", "ssim"):
            out.append(
                _compared(
                    f"{d}: FOMM reconstruction {metric} above the static source",
                    metrics,
                    (d, "reconstruction", metric),
                    (*static, metric),
                    higher=True,
                    clip_scores=clip_scores,
                )
            )
        out.append(
            _compared(
                f"{d}: audio keypoints' motion error below no motion (stage 1 learned)",
                metrics,
                (d, "neutral", "kp_motion"),
                (*static, "kp_motion"),
                higher=False,
                clip_scores=clip_scores,
            )
        )
        if d == STAGE2_DATASET:
            out.append(
                _compared(
                    f"{d}: generated frames nearer the real ones after stage 2 than with stage "
                    "1's audio network (PSNR; stage 2 learned from the rendered frames)",
                    metrics,
                    (d, "neutral", "psnr"),
                    (d, "stage1", "psnr"),
                    higher=True,
                    clip_scores=clip_scores,
                    measured=_has(metrics, d, "stage1"),
                )
            )
        out.append(
            _compared(
                f"{d}: reconstruction mouth-shape LMD below the static source "
                "(the renderer draws the real mouth shapes)",
                metrics,
                (d, "reconstruction", "m_lmd_shape"),
                (*static, "m_lmd_shape"),
                higher=False,
                clip_scores=clip_scores,
            )
        )
        for variant in ("neutral", "emotion"):
            ran = _has(metrics, d, variant)
            out.append(
                _compared(
                    f"{d}: {variant} M-LMD below the static source "
                    "(the mouth landmarks follow the real head and mouth motion)",
                    metrics,
                    (d, variant, "m_lmd"),
                    (*static, "m_lmd"),
                    higher=False,
                    clip_scores=clip_scores,
                    measured=ran,
                )
            )
            out.append(
                _compared(
                    f"{d}: {variant} mouth-shape LMD below the static source "
                    "(the mouth opens and closes with the speech)",
                    metrics,
                    (d, variant, "m_lmd_shape"),
                    (*static, "m_lmd_shape"),
                    higher=False,
                    clip_scores=clip_scores,
                    measured=ran,
                )
            )
            face = _value(metrics, d, variant, "f_lmd")
            out.append(
                Relation(
                    f"{d}: {variant} F-LMD reported (landmarks found on generated faces)",
                    face is not None,
                    f"{face}",
                    ran,
                )
            )
    sync = judges.get("sync_expert", {})
    accuracy, chance = sync.get("heldout_offset_accuracy"), sync.get("chance")
    out.append(
        Relation(
            f"sync judge: held-out offset accuracy >= {SYNC_OVER_CHANCE:g}x chance",
            accuracy is not None and chance is not None and accuracy >= SYNC_OVER_CHANCE * chance,
            f"{accuracy} vs chance {chance}",
            _held_out(judges, "sync_expert"),
        )
    )
    classifier = _judged(judges, "emotion_classifier")
    emotion = judges.get("emotion_classifier", {}).get("heldout_accuracy")
    out.append(
        Relation(
            f"emotion judge: held-out accuracy >= {EMOTION_JUDGE_MIN}",
            emotion is not None and emotion >= EMOTION_JUDGE_MIN,
            f"{emotion}",
            _held_out(judges, "emotion_classifier"),
        )
    )
    if "mead" in metrics:
        truth = _value(metrics, "mead", "ground_truth", "emotion_acc")
        out.append(
            Relation(
                f"emotion judge: accuracy on the ground-truth test clips >= {EMOTION_JUDGE_MIN}",
                truth is not None and truth >= EMOTION_JUDGE_MIN,
                f"{truth}",
                classifier,
            )
        )
        stage3 = _has(metrics, "mead", "emotion")
        moved = ("mead", "emotion", "emotion_kp")
        out.append(
            _compared(
                "mead: emotion keypoints nearer the real frames' with stage 3's displacement "
                "than without",
                metrics,
                moved,
                ("mead", "neutral", "emotion_kp"),
                higher=False,
                clip_scores=clip_scores,
                measured=stage3,
            )
        )
        named = _value(metrics, "mead", "emotion", "stage3_emotion_acc")
        chance = 1 / len(MEAD_EMOTIONS)
        out.append(
            Relation(
                f"mead: stage 3's classifier names the emotion of the held-out clips' emotion "
                f"sources at >= {STAGE3_OVER_CHANCE:g}x chance ({chance:g})",
                named is not None and named >= STAGE3_OVER_CHANCE * chance,
                f"{named}",
                stage3,
            )
        )
        from_neutral = ("mead", "emotion", "emotion_kp_from_neutral")
        out.append(
            _compared(  # none where no test speaker has a neutral clip to read it from
                "mead: stage 3's displacement fits better read from the clip's emotion source "
                "than from the speaker's neutral clip (stage 3 reads the expression)",
                metrics,
                moved,
                from_neutral,
                higher=False,
                clip_scores=clip_scores,
                measured=stage3 and _value(metrics, *from_neutral) is not None,
            )
        )
        emo = _value(metrics, "mead", "emotion", "emotion_acc")
        neutral = _value(metrics, "mead", "neutral", "emotion_acc")
        out.append(
            Relation(
                f"mead: emotion variant's emotion accuracy >= neutral variant's + {EMOTION_MARGIN}",
                emo is not None and neutral is not None and emo >= neutral + EMOTION_MARGIN,
                f"{emo} vs {neutral}",
                stage3 and classifier,
            )
        )
    return [r if r.measured else Relation(r.claim, False, r.detail, False) for r in out]
