"""What the FOMM renderer does to a face it need not move: the generator driven by the source
frame's own keypoints (``still_render``), the no-motion control with the renderer's blur.

Scored two ways on a split's clips, under the evaluation's protocol and source frame: against
the source frame itself (``fidelity``: PSNR and mouth-shape distance of the renderer's copy of
its input, the first 2 frames) and against the clip's real frames, beside the sharp
``static_source`` and the ``reconstruction`` (the real frames' keypoints). A renderer that
draws mouth shapes makes ``reconstruction`` beat ``still_render`` on ``m_lmd_shape``; a
renderer that distorts the mouth even unmoved makes ``still_render`` worse than
``static_source``. ``blurred_truth`` (the real frames under a Gaussian blur of ``--blur``
px at the model's size) shows what blur alone costs the landmarks. docs/evaluation.md, "What
M-LMD measures", has a run of it.

    python scripts/renderer_still.py --checkpoints models --split test --clips 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from eamm.clips import load_clips
from eamm.config import EvaluateParams, GenerateParams, load_section
from eamm.evaluate import ProtocolScorer, identity_source
from eamm.generate import detect_keypoints, frames_to_tensor, load_models, render, tensor_to_frames

METRICS = ("psnr", "m_lmd", "m_lmd_shape")
ROWS = ("fidelity", "static_source", "still_render", "reconstruction", "blurred_truth")


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
                    videos = {
                        "static_source": np.repeat(source, t, axis=0),
                        "still_render": render(nets, tensor, kp_source, unmoved, gp.batch_size),
                        "reconstruction": render(nets, tensor, kp_source, real, gp.batch_size),
                        "blurred_truth": np.stack(
                            [cv2.GaussianBlur(f, (0, 0), blur) for f in truth]
                        ),
                    }
                videos = {
                    k: v if isinstance(v, np.ndarray) else tensor_to_frames(v)
                    for k, v in videos.items()
                }
                truth_views = scorer.views(truth)
                for name, video in videos.items():
                    scores.setdefault(name, []).append(
                        scorer.score(scorer.views(video), truth_views)
                    )
                own = scorer.views(videos["static_source"][:2])
                still = scorer.views(videos["still_render"][:2])
                scores.setdefault("fidelity", []).append(scorer.score(still, own))
            for name in ROWS:
                table[f"{dataset} {name}"] = {
                    m: float(np.nanmean([s[m] for s in scores[name]])) for m in METRICS
                } | {"clips": len(scores[name])}
    finally:
        scorer.close()
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=Path("models"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--datasets", nargs="+", default=["lrw", "mead"])
    parser.add_argument("--clips", type=int, default=12, help="first N clips of the split")
    parser.add_argument("--blur", type=float, default=1.2, help="sigma, px at the model's size")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = still_table(
        args.checkpoints,
        args.params,
        args.data_root,
        args.split,
        args.datasets,
        args.clips,
        args.blur,
    )
    for name, row in table.items():
        n = row.pop("clips")
        print(f"{name}: {json.dumps({k: round(v, 2) for k, v in row.items()})} ({n} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
