"""Peak memory of ``eamm generate`` against the length of the speech: flat when it streams.

Each length runs ``eamm.generate.generate`` once in a fresh process (peak RSS, ``ru_maxrss``, is a
high-water mark), with the project's own sample inputs made in a temporary folder: the held-out
portrait, speech-like audio from ``eamm.sample.voice`` (16 kHz WAV), the sample LRW clip as the
emotion video (so all three videos are written) and networks of a ``model.profiles`` size
profile with random weights, saved as checkpoints (no trained ones needed; the cost is the same).
Reported per length: the process's peak RSS, its RSS before generating (imports done), peak
CUDA memory on a GPU and wall seconds. The ffmpeg encoders are processes of their own (a few
MB each, flat); ``ru_maxrss`` of children would count the forked Python pages, so it is left out.

GPU, reference size (the issue's row):
    python benchmarks/generate_memory.py --profile reference --seconds 10 600 --json ref.json
CPU, tiny size (docs/performance.md):
    python benchmarks/generate_memory.py --profile tiny --device cpu --seconds 10 600 \\
        --json benchmarks/results/generate_memory.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/torch load

ROOT = Path(__file__).resolve().parents[1]
EMOTION_KP = [1, 4, 6, 8]


def write_random_checkpoints(folder: Path, model: dict, emotion: bool = True) -> Path:
    """``fomm``, ``a2fd``, ``a2fd_finetune`` (and ``emotion``) checkpoints of ``model``'s active
    size profile with random weights, in the layout ``eamm.generate.load_models`` reads."""
    from eamm.checkpoint import save_checkpoint
    from eamm.models.build import build_emotion_net, build_networks, profile
    from eamm.stages import checkpoint_path

    sizes = profile(model)
    nets = build_networks(sizes)
    states = {name: net.state_dict() for name, net in nets.items()}
    fomm = {k: states[k] for k in ("kp_detector", "generator")}
    save_checkpoint(
        {"models": fomm, "params": {"model": model}}, checkpoint_path(folder, "train_fomm")
    )
    audio = {k: states[k] for k in ("audio_feature", "kp_detector_a")}
    for stage in ("train_a2fd", "finetune_a2fd"):  # as training leaves them
        save_checkpoint({"models": audio}, checkpoint_path(folder, stage))
    if emotion:
        emo = build_emotion_net(sizes, len(EMOTION_KP)).state_dict()
        payload = {"models": {"emo_detector": emo}, "emotion_kp": list(EMOTION_KP)}
        save_checkpoint(payload, checkpoint_path(folder, "train_emotion"))
    return folder


def write_inputs(folder: Path, seconds: list[float]) -> dict[str, Path]:
    """The sample portrait, the sample LRW clip and one speech WAV per length."""
    from eamm.audio import write_wav_s16
    from eamm.config import SampleDataParams, load_section
    from eamm.sample.dataset import plan, write_clip, write_portrait
    from eamm.sample.voice import synth_speech

    inputs = {"photo": write_portrait(folder / "portrait.png")}
    params = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clip = next(c for c in plan(params) if c.dataset == "lrw")
    write_clip(clip, folder / "raw")
    inputs["emotion_video"] = folder / "raw" / clip.video
    for length in seconds:
        speech = synth_speech(length, 16000, seed=0).samples
        inputs[f"speech_{length:g}"] = write_wav_s16(speech, folder / f"speech_{length:g}s.wav")
    return inputs


def own_peak_rss_mib() -> float:
    """This process's own peak RSS: ``VmHWM`` where Linux has it. ``ru_maxrss`` keeps the high
    mark of the forked parent across exec, so a spawned child would report the parent's size
    (here: the synthesised speech) as its own."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return common.peak_rss_mib()


def measure(
    photo: Path, speech: Path, emotion_video: Path, checkpoints: Path, out: Path, device: str
) -> dict:
    """One generation in this (fresh) process: its memory and time."""
    import torch

    import eamm.generate as gen
    from eamm.config import GenerateParams

    common.pin_threads()
    params = GenerateParams(device=device)
    rss_before = own_peak_rss_mib()
    start = time.perf_counter()
    result = gen.generate(photo, speech, emotion_video, out, checkpoints, params=params)
    wall = time.perf_counter() - start
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "frames": result.num_frames,
        "peak_rss_mib": round(own_peak_rss_mib(), 1),
        "rss_before_mib": round(rss_before, 1),
        "cuda_peak_mib": round(cuda, 1) if cuda is not None else None,
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = common.base_parser(__doc__, repeats=1)
    parser.add_argument("--profile", default="tiny", help="model.profiles entry of params.yaml")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 600.0])
    args = parser.parse_args(argv)
    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"] | {"profile": args.profile}
    rows = []
    with tempfile.TemporaryDirectory(prefix="eamm-bench-generate-") as tmp:
        folder = Path(tmp)
        inputs = write_inputs(folder, args.seconds)
        checkpoints = write_random_checkpoints(folder / "models", model)
        for length in args.seconds:
            row = common.run_isolated(
                measure,
                inputs["photo"],
                inputs[f"speech_{length:g}"],
                inputs["emotion_video"],
                checkpoints,
                folder / "out" / f"talk_{length:g}s.mp4",
                args.device,
            )
            row = {"profile": args.profile, "audio_s": length, **row}
            common.log(
                f"{args.profile} {length:g} s: {row['frames']} frames, peak RSS "
                f"{row['peak_rss_mib']} MiB (before generating {row['rss_before_mib']}), "
                f"{row['wall_s']} s"
            )
            rows.append(row)
    peaks = [r["peak_rss_mib"] for r in rows]
    spread = (max(peaks) - min(peaks)) / min(peaks) if peaks else None
    meta = common.machine_meta() | {"device": args.device, "profile": args.profile}
    payload = {"meta": meta, "rows": rows, "peak_rss_spread": spread}
    if spread is not None:
        common.log(f"peak RSS spread {100 * spread:.1f} % (goal: within 10 %)")
    common.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
