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

from eamm.clips import Clip, load_clips
from eamm.config import EvaluateParams, GenerateParams, load_section
from eamm.evaluate import driving_rows, identity_source, keypoint_motion
from eamm.generate import detect_keypoints, frames_to_tensor, load_models


def ablate(nets, clip: Clip, pool: list[Clip], source_frame: str, gp: GenerateParams) -> dict:
    device = torch.device("cpu")
    t = clip.num_frames
    size = nets.image_size
    mfcc, pose = (torch.from_numpy(rows).float() for rows in driving_rows(clip, t))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("models"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--datasets", nargs="+", default=["lrw", "mead"])
    parser.add_argument("--audio-weight", nargs="+", type=float, default=None)
    parser.add_argument("--clips", type=int, default=12, help="first N clips of the split")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = ablation_table(
        args.checkpoints,
        args.params,
        args.data_root,
        args.split,
        args.datasets,
        args.audio_weight,
        args.clips,
    )
    for (dataset, weight), row in table.items():
        n = row.pop("clips")
        mean = {k: round(v, 2) for k, v in row.items()}
        print(f"{dataset} audio_weight={weight:g}: {json.dumps(mean)} ({n} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
