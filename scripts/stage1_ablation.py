"""What stage 1's keypoints take from each input: the keypoint motion error of the evaluation
(``kp_motion``, eamm.evaluate.keypoint_motion) on a split's clips with one input taken away.

Rows per dataset, mean over clips, pixels of a 256 crop: ``no_motion`` (the baseline), ``audio``
(as the evaluation runs it, the source frame the evaluation picks), ``own_source`` (the clip's
own first frame as source), ``pose_held`` (the first pose row for every frame), ``audio_zeroed``
(all-zero MFCC windows). An audio branch that learned the mouth makes ``audio`` beat
``audio_zeroed``; one that follows the pose makes ``pose_held`` worse. docs/evaluation.md,
"What M-LMD measures", has a run of it.

    python scripts/stage1_ablation.py --checkpoints models --split test --audio-weight 1.6 1.0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from eamm.clips import Clip, fill_missing_rows, load_clips
from eamm.config import EvaluateParams, GenerateParams, load_section
from eamm.evaluate import identity_source, keypoint_motion
from eamm.generate import detect_keypoints, frames_to_tensor, load_models


def ablate(nets, clip: Clip, pool: list[Clip], source_frame: str, gp: GenerateParams) -> dict:
    device = torch.device("cpu")
    t = clip.num_frames
    size = nets.image_size
    mfcc = torch.from_numpy(clip.array("mfcc.npy")[:t, :, 1:]).float()
    pose = torch.from_numpy(fill_missing_rows(clip.array("pose.npy"))[:t, :6]).float()
    frames = clip.frames(list(range(t)), size)
    real = detect_keypoints(nets, frames_to_tensor(frames, device), 8)["value"]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--checkpoints", default="models")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", default="test")
    parser.add_argument("--datasets", nargs="+", default=["lrw", "mead"])
    parser.add_argument("--audio-weight", nargs="+", type=float, default=None)
    parser.add_argument("--clips", type=int, default=12, help="first N clips of the split")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gp = load_section(args.params, "generate", GenerateParams)
    evaluate = load_section(args.params, "evaluate", EvaluateParams)
    source_frame = evaluate.resolved().source_frame
    nets = load_models(args.checkpoints, torch.device("cpu"), gp)
    for weight in args.audio_weight or [gp.audio_weight]:
        weighted = gp.model_copy(update={"audio_weight": weight})
        for dataset in args.datasets:
            manifest = Path("data") / dataset / "processed" / "manifest.parquet"
            pool = load_clips(manifest, (args.split,), min_frames=2)
            rows = [ablate(nets, c, pool, source_frame, weighted) for c in pool[: args.clips]]
            mean = {k: round(float(np.mean([r[k] for r in rows])), 2) for k in rows[0]}
            print(f"{dataset} audio_weight={weight:g}: {json.dumps(mean)} ({len(rows)} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
