"""Generation speed: frames per second, x real time and peak memory of ``eamm generate``.

One fresh process per configuration (variant x batch size x speech length) runs
``eamm.generate.generate`` once on the inputs and random-weight checkpoints that
``generate_memory.py`` writes (the sample portrait, speech-like audio, the sample LRW clip as the
emotion video: the emotion, neutral and comparison videos are written, so every output frame is
rendered twice). Per configuration:

- end to end: wall seconds, frames/s and x real time (fps / 25), peak RSS (``VmHWM``), peak CUDA
  memory on a GPU; ``render_s`` is the generator's share of that wall time (every call timed,
  synchronised on a GPU; the first call, with any compile, also on its own: the inductor cache
  lives in the run's temporary folder, so a run's first compile starts cold) and ``other_s`` the
  rest: loading, aligning the photo and the emotion video, augmenting, the audio and emotion
  networks, the pipe to the encoders;
- network only, after the run and one more warm-up batch: the renderer (the generator on one
  batch of keypoints) and the keypoint networks (audio network + head, emotion network) in ms per
  frame, medians of ``--net-repeats`` batches; for variants other than fp32, the PSNR of the
  renderer's frames against fp32's on the same batch (random weights: a numerical check only).

Variants (``--variants``, combined with ``+``): ``fp32`` (today's default), ``bf16`` (the
generator under ``torch.autocast`` on the device), ``channels_last`` (NHWC generator),
``compile`` (``torch.compile`` of the generator); ``all`` is those four, ``bf16+channels_last``
and ``bf16+channels_last+compile``. They map to ``GenerateParams.precision``, ``channels_last``
and ``torch_compile``. A configuration that fails is a row with its error, not a gap.

GPU, reference size, the issue's table (goal: >= 10x real time at 256x256 on one H100/H200):
    python benchmarks/generate.py --profile reference --device cuda --seconds 10 60 \\
      --variants all --batch-sizes 8 16 32 --threads 4 --json benchmarks/results/generate_cuda.json
CPU, one thread (docs/performance.md; one configuration per run, merged with ``--append``):
    python benchmarks/generate.py --profile reference --device cpu --seconds 2 \\
        --configs fp32:8 --append --json benchmarks/results/generate.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/torch load
from generate_memory import own_peak_rss_mib, write_inputs, write_random_checkpoints

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
TOKENS = ("fp32", "bf16", "channels_last", "compile")  # one variant: these joined with "+"
ALL_VARIANTS = [*TOKENS, "bf16+channels_last", "bf16+channels_last+compile"]
KEY = ("profile", "device", "variant", "batch", "audio_s", "emotion")  # one row per key


def canonical(variant: str) -> str:
    """``channels_last+bf16`` -> ``bf16+channels_last``; fp32 is implied unless bf16."""
    tokens = set(variant.split("+"))
    if not tokens <= set(TOKENS) or {"fp32", "bf16"} <= tokens:
        raise ValueError(f"unknown variant {variant!r} (tokens: {', '.join(TOKENS)})")
    named = [t for t in TOKENS[1:] if t in tokens]
    return "+".join(named) or "fp32"


def variant_fields(variant: str) -> dict:
    """The ``GenerateParams`` fields of a variant."""
    tokens = canonical(variant).split("+")
    return {
        "precision": "bf16" if "bf16" in tokens else "fp32",
        "channels_last": "channels_last" in tokens,
        "torch_compile": "compile" in tokens,
    }


def configurations(variants: list[str], batches: list[int], configs: list[str] | None) -> list:
    """(variant, batch) pairs: ``--configs VARIANT:BATCH ...`` or every variant x batch size."""
    if configs:
        pairs = [c.rsplit(":", 1) for c in configs]
        return [(canonical(v), int(b)) for v, b in pairs]
    names = [n for v in variants for n in (ALL_VARIANTS if v == "all" else [v])]
    return [(canonical(v), b) for v in dict.fromkeys(names) for b in batches]


def sync(device) -> None:
    """Wait for the GPU's queued work (timings); nothing on the CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


class RenderTimer:
    """The generator, every call timed (wall, between device syncs)."""

    def __init__(self, inner, device) -> None:
        self.inner, self.device, self.calls = inner, device, []

    def __call__(self, *args, **kwargs):
        sync(self.device)
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        sync(self.device)
        self.calls.append(time.perf_counter() - start)
        return out


def network_only(gen, models, gp, speech: Path, checkpoints: Path, warmup: int, repeats: int):
    """The renderer and the keypoint networks on one batch, ms per frame (medians), and the
    variant's frames against fp32 eager's (PSNR dB, max abs difference)."""
    import numpy as np
    import torch

    from eamm.audio import end_pad_for_frames, mfcc_window_range
    from eamm.config import GenerateParams

    device, n, size = gen.pick_device(gp.device), gp.batch_size, models.image_size
    # images made as the run makes them (uint8 HWC -> float NCHW views of NHWC memory)
    rng = np.random.default_rng(0)
    source = gen.frames_to_tensor(rng.integers(0, 256, (size, size, 3), np.uint8), device)[None]
    transformed = gen.frames_to_tensor(rng.integers(0, 256, (n, size, size, 3), np.uint8), device)
    samples, t = gen.load_speech(speech)  # the run's first frames' MFCC windows, as many as n
    window = mfcc_window_range(samples, end_pad_for_frames(len(samples), t), 0, min(n, t))
    window = np.resize(window[:, :, 1:], (n, *window.shape[1:-1], window.shape[-1] - 1))
    mfcc = torch.from_numpy(window).float().to(device)
    pose = torch.zeros(n, 6, device=device)

    def keypoints() -> dict:
        feature, _ = models.audio_net.forward_from(source, mfcc[None], pose[None], gp.audio_weight)
        kp_audio = models.audio_head(feature[0])
        if models.emotion is not None:
            models.emotion(transformed, kp_audio["value"], kp_audio["jacobian"])
        return kp_audio

    def timed(fn):
        for _ in range(warmup):
            out = fn()
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            out = fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times) / n, out

    with torch.no_grad():
        kp_ms, kp_audio = timed(keypoints)
        kp_source = models.kp_detector(source)
        # driving keypoints: the audio branch's, moved to the source like relative mode does
        kp = {
            "value": kp_audio["value"] - kp_audio["value"][:1] + kp_source["value"],
            "jacobian": kp_source["jacobian"].expand_as(kp_audio["jacobian"]),
        }
        render_ms, frames = timed(
            lambda: next(gen.render_batches(models, source, kp_source, kp, n))
        )
        row = {"render_ms_per_frame": render_ms, "keypoints_ms_per_frame": kp_ms}
        row |= {"psnr_vs_fp32_db": None, "max_abs_vs_fp32": None}
        if (gp.precision, gp.channels_last, gp.torch_compile) != ("fp32", False, False):
            ref = gen.load_models(
                checkpoints, device, GenerateParams(generator_from=gp.generator_from)
            )
            expected = next(gen.render_batches(ref, source, kp_source, kp, n))
            mse = float((frames - expected).pow(2).mean())
            row["psnr_vs_fp32_db"] = 10 * np.log10(1 / mse) if mse > 0 else None
            row["max_abs_vs_fp32"] = float((frames - expected).abs().max())
    return row


def measure(
    photo: Path,
    speech: Path,
    emotion_video: Path | None,
    checkpoints: Path,
    out: Path,
    device: str,
    variant: str,
    batch: int,
    threads: int,
    net_warmup: int,
    net_repeats: int,
) -> dict:
    """One generation in this (fresh) process, then the networks alone."""
    import torch

    import eamm.generate as gen
    from eamm.config import GenerateParams

    common.pin_threads()
    torch.set_num_threads(threads)
    gp = GenerateParams(device=device, batch_size=batch, **variant_fields(variant))
    dev = gen.pick_device(gp.device)
    captured: dict = {}
    tune = gen.tune_renderer

    def tune_and_time(models, params):  # generate's own models, their generator timed
        models = tune(models, params)
        models.generator = captured["timer"] = RenderTimer(models.generator, dev)
        captured["models"] = models
        return models

    gen.tune_renderer = tune_and_time
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = own_peak_rss_mib()
    start = time.perf_counter()
    try:
        result = gen.generate(photo, speech, emotion_video, out, checkpoints, params=gp)
    finally:
        gen.tune_renderer = tune
    wall = time.perf_counter() - start
    peak_rss = own_peak_rss_mib()
    cuda = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    timer, models = captured["timer"], captured["models"]
    models.generator = timer.inner
    renders = 2 if result.emotion is not None else 1
    row = {
        "device": dev.type,
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else common.cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "frames": result.num_frames,
        "renders_per_frame": renders,
        "wall_s": wall,
        "fps": result.num_frames / wall,
        "x_realtime": result.num_frames / wall / FPS,
        "peak_rss_mib": round(peak_rss, 1),
        "rss_before_mib": round(rss_before, 1),
        "cuda_peak_mib": round(cuda, 1) if cuda is not None else None,
        "render_s": sum(timer.calls),
        "render_first_s": timer.calls[0] if timer.calls else None,
        "render_calls": len(timer.calls),
        "other_s": wall - sum(timer.calls),
    }
    row |= network_only(gen, models, gp, speech, checkpoints, net_warmup, net_repeats)
    per_frame = renders * row["render_ms_per_frame"] + row["keypoints_ms_per_frame"]
    row["net_fps"] = 1000 / per_frame
    return row


def merge(path: Path, rows: list[dict]) -> list[dict]:
    """Rows of an earlier run at ``path`` that these do not measure again, then these."""
    if not path.is_file():
        return rows
    keys = {tuple(r.get(k) for k in KEY) for r in rows}
    old = json.loads(path.read_text()).get("rows", [])
    return [r for r in old if tuple(r.get(k) for k in KEY) not in keys] + rows


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = common.base_parser(__doc__, repeats=1)
    parser.add_argument("--profile", default="reference", help="model.profiles entry")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument(
        "--variants", nargs="+", default=["fp32"], help=f"{', '.join(TOKENS)} joined by +, or all"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument(
        "--configs", nargs="+", metavar="VARIANT:BATCH", help="these pairs instead of the product"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU work)")
    parser.add_argument("--neutral", action="store_true", help="no emotion video: one output")
    parser.add_argument("--net-warmup", type=int, default=1, help="warm-up batches (networks)")
    parser.add_argument("--net-repeats", type=int, default=2, help="timed batches (networks)")
    parser.add_argument("--append", action="store_true", help="merge into the --json file's rows")
    args = parser.parse_args(argv)
    try:
        configs = configurations(args.variants, args.batch_sizes, args.configs)
    except ValueError as err:
        parser.error(str(err))
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(args.threads))
    import torch

    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"] | {"profile": args.profile}
    rows = []
    with tempfile.TemporaryDirectory(prefix="eamm-bench-generate-") as tmp:
        folder = Path(tmp)
        # compile's caches in the run's folder: its first configuration compiles from scratch
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor"))
        inputs = write_inputs(folder, args.seconds)
        torch.manual_seed(0)  # the same random networks in every run
        checkpoints = write_random_checkpoints(folder / "models", model)
        emotion_video = None if args.neutral else inputs["emotion_video"]
        for length in args.seconds:
            for variant, batch in configs:
                row = {"profile": args.profile, "variant": variant, "batch": batch}
                row |= {"audio_s": length, "emotion": not args.neutral}
                label = f"{args.profile} {variant} batch {batch}, {length:g} s"
                try:
                    row |= common.run_isolated(
                        measure,
                        inputs["photo"],
                        inputs[f"speech_{length:g}"],
                        emotion_video,
                        checkpoints,
                        folder / "out" / f"talk_{length:g}s.mp4",
                        args.device,
                        variant,
                        batch,
                        args.threads,
                        args.net_warmup,
                        args.net_repeats,
                    )
                except Exception as err:  # reported, not hidden
                    lines = [x for x in str(err).strip().splitlines() if x.strip()]
                    row |= {"device": args.device, "error": lines[-1] if lines else repr(err)}
                    common.log(f"{label}: FAILED {row['error']}")
                else:
                    common.log(
                        f"{label}: {row['frames']} frames, {row['fps']:.2f} fps = "
                        f"{row['x_realtime']:.3f}x real time, peak RSS {row['peak_rss_mib']:.0f} "
                        f"MiB; renderer {row['render_ms_per_frame']:.0f} ms/frame, keypoint nets "
                        f"{row['keypoints_ms_per_frame']:.0f} ms/frame, outside the generator "
                        f"{row['other_s']:.1f} s"
                    )
                row["time"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                row["loadavg_1"] = round(os.getloadavg()[0], 2)
                rows.append(row)
    meta = common.machine_meta() | {"device": args.device, "profile": args.profile}
    meta["torch"] = torch.__version__
    if args.append and args.json:
        rows = merge(Path(args.json), rows)
    common.write_json(args.json, {"meta": meta, "rows": rows})
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
