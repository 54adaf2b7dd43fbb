"""Probes of the demo's checkpoints on a split's clips, for what the evaluation's numbers
cannot tell apart. docs/evaluation.md, "What M-LMD measures", has a run of each.

``stage1``: what stage 1's keypoints take from each input, the evaluation's keypoint motion
error (``kp_motion``, eamm.evaluate.keypoint_motion) with one input taken away. Rows per
dataset, mean over clips, pixels of a 256 crop: ``no_motion`` (the baseline), ``audio`` (as the
evaluation runs it, with the source frame it picks), ``own_source`` (the clip's own first frame
as source), ``pose_held`` (the first pose row for every frame), ``audio_zeroed`` (all-zero MFCC
windows), ``pose_linear`` (a least-squares linear map from the pose rows' motion to the
detector's keypoint motion, fitted on the first ``--fit-clips`` clips of the train split: what
the pose alone can tell). An audio branch that learned the mouth makes ``audio`` beat
``audio_zeroed``; one that follows the pose makes ``pose_held`` worse and, fully trained, comes
near ``pose_linear``.

``teacher``: what FOMM's keypoints (stage 1's targets) carry, on the train split: the share of
their motion (values, and jacobians) that a linear map explains from the pose rows, from the
pose and the mouth's opening and width (68-point landmarks 62/66 and 48/54), and from the mouth
alone (R^2). A teacher whose keypoints only follow the head leaves stage 1 nothing to learn from
the speech.

``renderer``: what the FOMM renderer does to a face it need not move, the generator driven by
the source frame's own keypoints (``still_render``: no motion, with the renderer's blur). Scored
against the source frame itself (``fidelity``: the renderer's copy of its input, first 2 frames)
and against the clip's real frames, beside the sharp ``static_source``, the ``reconstruction``
(the real frames' keypoints) and ``blurred_truth`` (the real frames under a Gaussian blur of
``--blur`` px at the model's size: what blur alone costs the landmarks). A renderer that draws
mouth shapes makes ``reconstruction`` beat ``still_render`` on ``m_lmd_shape``, and one that
draws expressions names the MEAD clips' emotion (``emotion_acc``, the evaluation's judge) from
the speaker's neutral source frame.

``expression``: how much of an expression the renderer can show, whatever stage 3 learns. The
MEAD clips' emotion as the evaluation's judge names it (``emotion_acc``) from the speaker's
neutral frame, driven by ``audio`` (the audio keypoints in relative mode, as the ``neutral``
variant: no expression), ``stage3_oracle`` (the audio keypoints with stage 3's chosen keypoints
moved by exactly what stage 3 learns to add, the real frames' keypoints minus the audio's),
``all_oracle`` (the same on every keypoint) and ``reconstruction`` (the real frames'
keypoints), and ``landmark_warp`` (no network: the neutral frame warped piecewise-affinely
onto each real frame's stored 68 landmarks, what a renderer that follows the landmarks exactly
shows). A stage 3 that learned perfectly reaches ``stage3_oracle``; the emotion variant can
open a gap over the neutral one only where that row is above ``audio``.

``rig``: how much of an expression a warp alone shows, on the sample's own clips. The split's
MEAD clips re-rendered by the sample's rig (``eamm.sample``) and preprocessed as the pipeline
does, then named by the judge: ``as_generated`` (the clips as they are), ``cavity_unpainted``
(the jaw's gap not painted dark: the rig's warp alone) and ``no_jaw_drop`` (no mouth opening
at all). Only for the sample dataset.

    python scripts/demo_probes.py stage1 --checkpoints models --audio-weight 1.6 1.0
    python scripts/demo_probes.py teacher --checkpoints models --split train --clips 24
    python scripts/demo_probes.py renderer --checkpoints models --clips 12
    python scripts/demo_probes.py expression --checkpoints models --clips 20
    python scripts/demo_probes.py rig --checkpoints models --clips 44
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.transform import PiecewiseAffineTransform, warp

from eamm.clips import Clip, fill_missing_rows, load_clips
from eamm.config import (
    EvaluateParams,
    GenerateParams,
    PreprocessParams,
    SampleDataParams,
    load_section,
)
from eamm.evaluate import (
    LANDMARK_SIZE,
    ProtocolScorer,
    audio_keypoints,
    driving_rows,
    identity_source,
    keypoint_motion,
)
from eamm.generate import (
    detect_keypoints,
    frames_to_tensor,
    load_models,
    relative_keypoints,
    render,
    tensor_to_frames,
)
from eamm.judges.scoring import judge_scores, load_judges
from eamm.preprocess.clip import preprocess_clip
from eamm.sample.dataset import clip_signals, plan, write_clip

# the teacher probe's mouth: inner-lip opening and mouth width (68-point landmarks)
MOUTH_SIZE = ((62, 66), (48, 54))
# the renderer probe's metrics (emotion_acc: MEAD clips, when the emotion judge is trained) and rows
METRICS = ("psnr", "m_lmd", "m_lmd_shape", "emotion_acc")
ROWS = ("fidelity", "static_source", "still_render", "reconstruction", "blurred_truth")


def teacher_keypoints(nets, clip: Clip, gp: GenerateParams) -> dict[str, torch.Tensor]:
    """FOMM's detector on the clip's real frames (stage 1's targets)."""
    frames = frames_to_tensor(clip.frames(list(range(clip.num_frames)), nets.image_size), "cpu")
    return detect_keypoints(nets, frames, gp.batch_size)


def _motion(rows: np.ndarray) -> np.ndarray:
    """Each frame's row minus the first frame's, flattened per frame."""
    rows = rows.reshape(len(rows), -1)
    return rows - rows[:1]


def pose_fit(nets, clips: list[Clip], gp: GenerateParams) -> np.ndarray:
    """Least-squares linear map from the pose rows' motion to the keypoints' motion."""
    poses, motions = [], []
    for clip in clips:
        poses.append(_motion(driving_rows(clip, clip.num_frames)[1]))
        motions.append(_motion(teacher_keypoints(nets, clip, gp)["value"].numpy()))
    coef, *_ = np.linalg.lstsq(np.vstack(poses), np.vstack(motions), rcond=None)
    return coef


def ablate(
    nets, clip: Clip, pool: list[Clip], source_frame: str, gp: GenerateParams, fit: np.ndarray
) -> dict:
    device = torch.device("cpu")
    t = clip.num_frames
    size = nets.image_size
    mfcc, pose = (torch.from_numpy(rows).float() for rows in driving_rows(clip, t))
    real = teacher_keypoints(nets, clip, gp)["value"]

    def source(c: Clip) -> torch.Tensor:
        return frames_to_tensor(c.frames([0], size), device)

    chosen, own = source(identity_source(clip, pool, source_frame)), source(clip)
    cases = {
        "audio": (chosen, mfcc, pose),
        "own_source": (own, mfcc, pose),
        "pose_held": (own, mfcc, pose[:1].expand_as(pose).clone()),
        "audio_zeroed": (own, torch.zeros_like(mfcc), pose),
    }
    row = {}
    for name, (src, audio, poses) in cases.items():
        motion = keypoint_motion(nets, src, audio, poses, real, gp)
        row["no_motion"] = motion["static_source"]
        row[name] = motion["neutral"]
    error = _motion(pose.numpy()) @ fit - _motion(real.numpy())
    row["pose_linear"] = float(np.linalg.norm(error.reshape(t, -1, 2), axis=-1).mean())
    row["pose_linear"] *= LANDMARK_SIZE / 2
    return row


def teacher_table(
    checkpoints: Path, params: Path, data_root: Path, split: str, datasets: list[str], clips: int
) -> dict[str, dict[str, float]]:
    """{"<dataset> <values|jacobians>": R^2 from pose, pose + mouth, mouth} over ``clips``."""
    gp = load_section(params, "generate", GenerateParams)
    nets = load_models(checkpoints, torch.device("cpu"), gp)
    table = {}
    for dataset in datasets:
        manifest = data_root / dataset / "processed" / "manifest.parquet"
        pose, mouth, values, jacobians = [], [], [], []
        for clip in load_clips(manifest, (split,), min_frames=2)[:clips]:
            t = clip.num_frames
            kp = teacher_keypoints(nets, clip, gp)
            points = fill_missing_rows(clip.array("landmarks.npy"))[:t]
            shape = np.stack(
                [np.linalg.norm(points[:, a] - points[:, b], axis=1) for a, b in MOUTH_SIZE], 1
            )
            pose.append(_motion(driving_rows(clip, t)[1]))
            mouth.append(_motion(shape))
            values.append(_motion(kp["value"].numpy()))
            jacobians.append(_motion(kp["jacobian"].numpy()))
        x_pose, x_mouth = np.vstack(pose), np.vstack(mouth)
        for name, target in (("values", values), ("jacobians", jacobians)):
            y = np.vstack(target)
            table[f"{dataset} {name}"] = {
                "pose": _r2(x_pose, y),
                "pose_mouth": _r2(np.hstack([x_pose, x_mouth]), y),
                "mouth": _r2(x_mouth, y),
                "clips": len(pose),
            }
    return table


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """Share of ``y``'s variance (about its mean) a linear map with intercept explains."""
    x = np.hstack([x, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    return float(1 - (residual**2).sum() / ((y - y.mean(axis=0)) ** 2).sum())


def ablation_table(
    checkpoints: Path,
    params: Path,
    data_root: Path,
    split: str,
    datasets: list[str],
    weights: list[float] | None,
    clips: int,
    fit_clips: int = 40,
) -> dict[tuple[str, float], dict[str, float]]:
    """Mean rows over the first ``clips`` clips of ``split``, per (dataset, audio weight)."""
    gp = load_section(params, "generate", GenerateParams)
    source_frame = load_section(params, "evaluate", EvaluateParams).resolved().source_frame
    nets = load_models(checkpoints, torch.device("cpu"), gp)
    manifests = {d: data_root / d / "processed" / "manifest.parquet" for d in datasets}
    fits = {
        d: pose_fit(nets, load_clips(m, ("train",), 2)[:fit_clips], gp)
        for d, m in manifests.items()
    }
    table = {}
    for weight in weights or [gp.audio_weight]:
        weighted = gp.model_copy(update={"audio_weight": weight})
        for dataset, manifest in manifests.items():
            pool = load_clips(manifest, (split,), min_frames=2)
            fit = fits[dataset]
            rows = [ablate(nets, c, pool, source_frame, weighted, fit) for c in pool[:clips]]
            table[dataset, weight] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            table[dataset, weight]["clips"] = len(rows)
    return table


def still_table(
    checkpoints: Path,
    params: Path,
    data_root: Path,
    split: str,
    datasets: list[str],
    clips: int,
    blur: float,
) -> dict[str, dict[str, float]]:
    """{"<dataset> <row>": {metric: mean over the first ``clips`` clips}}, rows ``fidelity``,
    ``static_source``, ``still_render``, ``reconstruction`` and ``blurred_truth``."""
    device = torch.device("cpu")
    gp = load_section(params, "generate", GenerateParams)
    protocol = load_section(params, "evaluate", EvaluateParams).resolved()
    nets = load_models(checkpoints, device, gp)
    judges = load_judges(checkpoints, device, protocol.vshift, None)
    judges.expert = None  # the emotion judge only
    size = nets.image_size
    scorer = ProtocolScorer(protocol)
    table = {}
    try:
        for dataset in datasets:
            manifest = data_root / dataset / "processed" / "manifest.parquet"
            pool = load_clips(manifest, (split,), min_frames=2)
            scores: dict[str, list[dict]] = {}
            for clip in pool[:clips]:
                t = clip.num_frames
                truth = clip.frames(list(range(t)), size)
                source = identity_source(clip, pool, protocol.source_frame).frames([0], size)
                tensor = frames_to_tensor(source, device)
                with torch.no_grad():
                    kp_source = nets.kp_detector(tensor)
                    unmoved = {k: v.expand(t, *v.shape[1:]) for k, v in kp_source.items()}
                    real = detect_keypoints(nets, frames_to_tensor(truth, device), gp.batch_size)
                    still = render(nets, tensor, kp_source, unmoved, gp.batch_size)
                    moved = render(nets, tensor, kp_source, real, gp.batch_size)
                videos = {
                    "static_source": np.repeat(source, t, axis=0),
                    "still_render": tensor_to_frames(still),
                    "reconstruction": tensor_to_frames(moved),
                    "blurred_truth": np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in truth]),
                }
                truth_views = scorer.views(truth)
                mfcc = clip.array("mfcc.npy") if dataset == "mead" else None
                for name, video in videos.items():
                    acc = float("nan")
                    if mfcc is not None:
                        acc = judge_scores(judges, video, mfcc, None, clip.emotion)["emotion_acc"]
                    scores.setdefault(name, []).append(
                        scorer.score(scorer.views(video), truth_views) | {"emotion_acc": acc}
                    )
                own = scorer.views(videos["static_source"][:2])
                copy = scorer.views(videos["still_render"][:2])
                scores.setdefault("fidelity", []).append(
                    scorer.score(copy, own) | {"emotion_acc": float("nan")}
                )
            for name in ROWS:
                values = {m: np.array([s[m] for s in scores[name]]) for m in METRICS}
                table[f"{dataset} {name}"] = {
                    m: float(np.nanmean(v))
                    for m, v in values.items()
                    if m != "emotion_acc" or not np.isnan(v).all()
                } | {"clips": len(scores[name])}
    finally:
        scorer.close()
    return table


def _moved(relative: dict, real: dict, audio: dict, picks: list[int]) -> dict[str, torch.Tensor]:
    """``relative`` keypoints with ``picks`` moved by the real keypoints minus the audio's."""
    kp = {k: v.clone() for k, v in relative.items()}
    for k in kp:
        kp[k][:, picks] += real[k][:, picks] - audio[k][:, picks]
    return kp


EXPRESSION_ROWS = ("audio", "stage3_oracle", "all_oracle", "reconstruction", "landmark_warp")
# the fixed points of the landmark warp: the crop's corners and edge midpoints (unit square)
WARP_BORDER = np.array([[x, y] for x in (0, 0.5, 1) for y in (0, 0.5, 1) if (x, y) != (0.5, 0.5)])


def _piecewise_affine(src: np.ndarray, dst: np.ndarray):
    """The fitted transform, or a false value where it fails (scikit-image 0.26 deprecates
    ``estimate`` for ``from_estimate``; the pinned range starts at 0.22)."""
    if hasattr(PiecewiseAffineTransform, "from_estimate"):
        return PiecewiseAffineTransform.from_estimate(src, dst)
    tf = PiecewiseAffineTransform()
    return tf if tf.estimate(src, dst) else None


def landmark_warp(source: np.ndarray, from_lm: np.ndarray, to_lm: np.ndarray) -> np.ndarray:
    """``source`` (S, S, 3) warped piecewise-affinely so that its landmarks ``from_lm`` (68, 2,
    px at S) land on ``to_lm`` (T, 68, 2): what a renderer that follows the landmarks exactly
    would draw. Frames without landmarks (NaN) keep the source."""
    size = source.shape[0]
    border = WARP_BORDER * (size - 1)
    frames = []
    for lm in to_lm:
        if not np.isfinite(lm).all():
            frames.append(source)
            continue
        # skimage's warp takes the output -> input map: the frame's landmarks to the source's
        tf = _piecewise_affine(np.vstack([lm, border]), np.vstack([from_lm, border]))
        if not tf:
            frames.append(source)
            continue
        frames.append(
            (warp(source, tf, output_shape=source.shape[:2]) * 255).round().astype(np.uint8)
        )
    return np.stack(frames)


def expression_table(
    checkpoints: Path, params: Path, data_root: Path, split: str, clips: int
) -> dict[str, dict[str, float]]:
    """{"mead <row>": {"emotion_acc": share of the first ``clips`` MEAD clips named right}}."""
    device = torch.device("cpu")
    gp = load_section(params, "generate", GenerateParams)
    protocol = load_section(params, "evaluate", EvaluateParams).resolved()
    nets = load_models(checkpoints, device, gp)
    if nets.emotion is None:
        raise SystemExit(f"{checkpoints}: no emotion checkpoint (stage 3's keypoints)")
    judges = load_judges(checkpoints, device, protocol.vshift, None)
    judges.expert = None  # the emotion judge only
    size = nets.image_size
    pool = load_clips(data_root / "mead" / "processed" / "manifest.parquet", (split,), 2)
    hits: dict[str, list[float]] = {row: [] for row in EXPRESSION_ROWS}
    for clip in pool[:clips]:
        t = min(clip.num_frames, protocol.max_frames or clip.num_frames)
        truth = clip.frames(list(range(t)), size)
        mfcc, pose = (torch.from_numpy(rows).float() for rows in driving_rows(clip, t))
        neutral = identity_source(clip, pool, protocol.source_frame)
        source = neutral.frames([0], size)
        tensor = frames_to_tensor(source, device)
        warped = landmark_warp(
            source[0],
            neutral.array("landmarks.npy")[0] * (size - 1) / (neutral.frame_width() - 1),
            clip.array("landmarks.npy")[:t] * (size - 1) / (clip.frame_width() - 1),
        )
        with torch.no_grad():
            kp_source = nets.kp_detector(tensor)
            real = detect_keypoints(nets, frames_to_tensor(truth, device), gp.batch_size)
            audio = audio_keypoints(nets, tensor, mfcc, pose, gp)
            first = {k: v[:1] for k, v in audio.items()}
            relative = relative_keypoints(audio, first, kp_source, gp.relative_jacobian)

            drives = {
                "audio": relative,
                "stage3_oracle": _moved(relative, real, audio, nets.emotion_kp),
                "all_oracle": _moved(relative, real, audio, list(range(real["value"].shape[1]))),
                "reconstruction": real,
            }
            videos = {
                row: tensor_to_frames(render(nets, tensor, kp_source, kp, gp.batch_size))
                for row, kp in drives.items()
            }
        for row, video in (videos | {"landmark_warp": warped}).items():
            score = judge_scores(judges, video, mfcc.numpy(), None, clip.emotion)
            hits[row].append(score["emotion_acc"])
    return {
        f"mead {row}": {"emotion_acc": float(np.mean(v)), "clips": len(v)}
        for row, v in hits.items()
    }


RIG_ROWS = ("as_generated", "cavity_unpainted", "no_jaw_drop")


def rig_table(
    checkpoints: Path, params: Path, data_root: Path, split: str, clips: int
) -> dict[str, dict[str, float]]:
    """{"mead <row>": {"emotion_acc": ...}}: the judge on the first ``clips`` MEAD clips of the
    split re-rendered by the sample's own rig and preprocessed as the pipeline does."""
    device = torch.device("cpu")
    sample = load_section(params, "sample_data", SampleDataParams)
    preprocess = load_section(params, "preprocess", PreprocessParams)
    protocol = load_section(params, "evaluate", EvaluateParams).resolved()
    judges = load_judges(checkpoints, device, protocol.vshift, None)
    judges.expert = None  # the emotion judge only
    size = load_models(
        checkpoints, device, load_section(params, "generate", GenerateParams)
    ).image_size
    planned = {c.video: c for c in plan(sample) if c.dataset == "mead"}
    pool = load_clips(data_root / "mead" / "processed" / "manifest.parquet", (split,), 2)
    hits: dict[str, list[float]] = {row: [] for row in RIG_ROWS}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in pool[:clips]:
            speaker, rest = clip.clip_id.split("/", 1)
            planned_clip = planned.get(f"mead/{speaker}/video/{rest}.mp4")
            if planned_clip is None:
                raise SystemExit(f"{clip.clip_id}: not a clip of the sample dataset ({params})")
            signals = clip_signals(planned_clip)
            still_jaw = replace(signals, opening=np.zeros_like(signals.opening))
            variants = {
                "as_generated": (signals, True),
                "cavity_unpainted": (signals, False),
                "no_jaw_drop": (still_jaw, True),
            }
            for row, (shown, paint) in variants.items():
                root = Path(tmp) / row
                write_clip(planned_clip, root, shown, paint)
                out = root / "processed"
                result = preprocess_clip(
                    root / planned_clip.video,
                    out,
                    audio=root / planned_clip.audio if planned_clip.audio else None,
                    params=preprocess,
                )
                redone = Clip.from_folder(out, result.num_frames, emotion=clip.emotion)
                t = min(redone.num_frames, protocol.max_frames or redone.num_frames)
                video = redone.frames(list(range(t)), size)
                score = judge_scores(judges, video, redone.array("mfcc.npy"), None, clip.emotion)
                hits[row].append(score["emotion_acc"])
    return {
        f"mead {row}": {"emotion_acc": float(np.mean(v)), "clips": len(v)}
        for row, v in hits.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    probes = parser.add_subparsers(dest="probe", required=True)
    stage1 = probes.add_parser("stage1", help="stage 1's keypoint motion, one input taken away")
    stage1.add_argument("--audio-weight", nargs="+", type=float, default=None)
    stage1.add_argument("--fit-clips", type=int, default=40, help="train clips for pose_linear")
    teacher = probes.add_parser("teacher", help="what FOMM's keypoints carry: pose, mouth")
    still = probes.add_parser("renderer", help="the renderer's copy of an unmoved face")
    still.add_argument("--blur", type=float, default=1.2, help="sigma, px at the model's size")
    expression = probes.add_parser("expression", help="the expression the renderer can show")
    rig = probes.add_parser("rig", help="the expression a warp alone shows: the sample's rig")
    for probe in (stage1, still, teacher, expression, rig):
        probe.add_argument("--checkpoints", type=Path, default=Path("models"))
        probe.add_argument("--params", type=Path, default=Path("params.yaml"))
        probe.add_argument("--data-root", type=Path, default=Path("data"))
        probe.add_argument("--split", default="test")
        probe.add_argument("--datasets", nargs="+", default=["lrw", "mead"])
        probe.add_argument("--clips", type=int, default=12, help="first N clips of the split")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    common = (args.checkpoints, args.params, args.data_root, args.split, args.datasets)
    if args.probe == "stage1":
        table = {
            f"{dataset} audio_weight={weight:g}": row
            for (dataset, weight), row in ablation_table(
                *common, args.audio_weight, args.clips, args.fit_clips
            ).items()
        }
    elif args.probe == "teacher":
        table = teacher_table(*common, args.clips)
    elif args.probe == "expression":
        table = expression_table(*common[:4], args.clips)
    elif args.probe == "rig":
        table = rig_table(*common[:4], args.clips)
    else:
        table = still_table(*common, args.clips, args.blur)
    digits = 3 if args.probe == "teacher" else 2  # shares, pixels
    for name, row in table.items():
        n = row.pop("clips")
        print(f"{name}: {json.dumps({k: round(v, digits) for k, v in row.items()})} ({n} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
