"""Two probes of the demo's checkpoints on a split's clips, for what the evaluation's numbers
cannot tell apart. docs/evaluation.md, "What M-LMD measures", has a run of each.

``stage1``: what stage 1's keypoints take from each input, the evaluation's keypoint motion
error (``kp_motion``, eamm.evaluate.keypoint_motion) with one input taken away. Rows per
dataset, mean over clips, pixels of a 256 crop: ``no_motion`` (the baseline), ``audio`` (as the
evaluation runs it, with the source frame it picks), ``own_source`` (the clip's own first frame
as source), ``pose_held`` (the first pose row for every frame), ``audio_zeroed`` (all-zero MFCC
windows). An audio branch that learned the mouth makes ``audio`` beat ``audio_zeroed``; one that
follows the pose makes ``pose_held`` worse.

``renderer``: what the FOMM renderer does to a face it need not move, the generator driven by
the source frame's own keypoints (``still_render``: no motion, with the renderer's blur). Scored
against the source frame itself (``fidelity``: the renderer's copy of its input, first 2 frames)
and against the clip's real frames, beside the sharp ``static_source``, the ``reconstruction``
(the real frames' keypoints) and ``blurred_truth`` (the real frames under a Gaussian blur of
``--blur`` px at the model's size: what blur alone costs the landmarks). A renderer that draws
mouth shapes makes ``reconstruction`` beat ``still_render`` on ``m_lmd_shape``.

    python scripts/demo_probes.py stage1 --checkpoints models --audio-weight 1.6 1.0
    python scripts/demo_probes.py renderer --checkpoints models --clips 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from eamm.clips import Clip, load_clips
from eamm.config import EvaluateParams, GenerateParams, load_section
from eamm.evaluate import ProtocolScorer, driving_rows, identity_source, keypoint_motion
from eamm.generate import detect_keypoints, frames_to_tensor, load_models, render, tensor_to_frames

# the renderer probe's metrics and rows
METRICS = ("psnr", "m_lmd", "m_lmd_shape")
ROWS = ("fidelity", "static_source", "still_render", "reconstruction", "blurred_truth")


def ablate(nets, clip: Clip, pool: list[Clip], source_frame: str, gp: GenerateParams) -> dict:
    device = torch.device("cpu")
    t = clip.num_frames
    size = nets.image_size
    mfcc, pose = (torch.from_numpy(rows).float() for rows in driving_rows(clip, t))
    frames = clip.frames(list(range(t)), size)
    real = detect_keypoints(nets, frames_to_tensor(frames, device), gp.batch_size)["value"]

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
    return row


def ablation_table(
    checkpoints: Path,
    params: Path,
    data_root: Path,
    split: str,
    datasets: list[str],
    weights: list[float] | None,
    clips: int,
) -> dict[tuple[str, float], dict[str, float]]:
    """Mean rows over the first ``clips`` clips of ``split``, per (dataset, audio weight)."""
    gp = load_section(params, "generate", GenerateParams)
    source_frame = load_section(params, "evaluate", EvaluateParams).resolved().source_frame
    nets = load_models(checkpoints, torch.device("cpu"), gp)
    table = {}
    for weight in weights or [gp.audio_weight]:
        weighted = gp.model_copy(update={"audio_weight": weight})
        for dataset in datasets:
            manifest = data_root / dataset / "processed" / "manifest.parquet"
            pool = load_clips(manifest, (split,), min_frames=2)
            rows = [ablate(nets, c, pool, source_frame, weighted) for c in pool[:clips]]
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
                for name, video in videos.items():
                    scores.setdefault(name, []).append(
                        scorer.score(scorer.views(video), truth_views)
                    )
                own = scorer.views(videos["static_source"][:2])
                copy = scorer.views(videos["still_render"][:2])
                scores.setdefault("fidelity", []).append(scorer.score(copy, own))
            for name in ROWS:
                table[f"{dataset} {name}"] = {
                    m: float(np.nanmean([s[m] for s in scores[name]])) for m in METRICS
                } | {"clips": len(scores[name])}
    finally:
        scorer.close()
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    probes = parser.add_subparsers(dest="probe", required=True)
    stage1 = probes.add_parser("stage1", help="stage 1's keypoint motion, one input taken away")
    stage1.add_argument("--audio-weight", nargs="+", type=float, default=None)
    still = probes.add_parser("renderer", help="the renderer's copy of an unmoved face")
    still.add_argument("--blur", type=float, default=1.2, help="sigma, px at the model's size")
    for probe in (stage1, still):
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
                *common, args.audio_weight, args.clips
            ).items()
        }
    else:
        table = still_table(*common, args.clips, args.blur)
    for name, row in table.items():
        n = row.pop("clips")
        print(f"{name}: {json.dumps({k: round(v, 2) for k, v in row.items()})} ({n} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
