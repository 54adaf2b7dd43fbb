"""Ours: ``eamm preprocess-clip`` (eamm.preprocess.preprocess_clip) on the fixture clips, per step.

The whole clip job (all five outputs: 25 fps aligned crops encoded to H.264, per-frame 68-point
landmarks and pose, 16 kHz WAV, MFCC windows) with the face models loaded once per worker, as
the flow does (model loading is reported apart). Steps are timed by wrapping the functions
``eamm.preprocess.clip`` calls (exclusive time, nothing in the library changes): probe, decode,
fps, detect (first-frames detection + alignment, everything inside it), warp, encode (the
in-process libx264 writer's calls; with ``encoder=ffmpeg`` the pipe writes + the ffmpeg
encoder's CPU, collected when it exits), landmarks (face mesh tracking + 68 points), pose,
audio (decode/resample/write), mfcc, other (the rest: saves, renames).

Each clip runs in a fresh process, so peak RSS is the worker's own; ``--long K`` adds the MEAD
clip concatenated K times (temporary, not committed) to show memory is flat in clip length.
``--profile`` adds a pyinstrument profile of one more run per clip. ``--compare KEY=VALUE ...``
also measures each clip with those ``PreprocessParams`` changed (``compare_rows`` in the JSON),
alternating with the default runs, so a change is judged against its baseline in the same
minutes of a shared machine.

    python benchmarks/preprocess_ours.py --long 10 --profile --json ours.json
    python benchmarks/preprocess_ours.py --compare encoder=ffmpeg detect_boxes=every
    python benchmarks/preprocess_ours.py --frames 8 --repeats 1 --fixtures lrw_256p
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/cv2 load

STEPS = ("probe", "decode", "fps", "detect", "warp", "encode", "landmarks", "pose", "audio")
STEPS += ("mfcc", "other")


def instrument(clock: common.StepClock, models: object, backend: object) -> None:
    """Wrap what ``preprocess_clip`` calls (module globals, the model objects) with timers."""
    from eamm.preprocess import clip

    def timed_writer(base: type) -> type:
        class TimedWriter(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                with clock.step("encode"):
                    super().__init__(*args, **kwargs)

            def write(self, frame):  # type: ignore[no-untyped-def]
                with clock.step("encode"):
                    super().write(frame)

            def close(self):  # type: ignore[no-untyped-def]
                with clock.step("encode"):
                    return super().close()

        return TimedWriter

    clip.VideoWriter = timed_writer(clip.VideoWriter)
    clip.PyAVVideoWriter = timed_writer(clip.PyAVVideoWriter)
    clip.open_video = clock.wrap("probe", clip.open_video)
    clip.decode_frames = clock.wrap_iter("decode", clip.decode_frames)
    clip.resample_fps = clock.wrap_iter("fps", clip.resample_fps)
    clip.clip_transform = clock.wrap("detect", clip.clip_transform, absorb=True)
    clip.warp_to_crop = clock.wrap("warp", clip.warp_to_crop)
    clip.pose_row = clock.wrap("pose", clip.pose_row)
    for name in ("_load_audio", "fit_length", "write_wav_s16"):
        setattr(clip, name, clock.wrap("audio", getattr(clip, name)))
    clip.mfcc_windows = clock.wrap("mfcc", clip.mfcc_windows)
    models.track = clock.wrap("landmarks", models.track)  # type: ignore[attr-defined]
    backend.points68 = clock.wrap("landmarks", backend.points68)  # type: ignore[attr-defined]


def measure_clip(
    name: str,
    video: str,
    audio: str | None,
    repeats: int,
    warmup: int,
    profile: bool,
    overrides: dict[str, str] | None = None,
) -> dict:
    """Runs in a fresh process: medians over ``repeats`` of the clip job and of each step."""
    common.pin_threads()
    from eamm.config import PreprocessParams
    from eamm.face.landmarks import FaceModels, make_backend
    from eamm.preprocess import preprocess_clip

    params = PreprocessParams.model_validate(overrides or {})
    with common.timed() as load:
        models = FaceModels.from_params(params.landmarks)
        backend = make_backend(params.landmarks.backend, params.landmarks.fan_weights_dir)
    clock = common.StepClock()
    instrument(clock, models, backend)
    clocks, results = [], []
    with tempfile.TemporaryDirectory(prefix="eamm-ours-") as tmp:
        out = Path(tmp) / "clip"

        def once() -> object:
            clock.reset()
            with common.timed() as total:
                result = preprocess_clip(
                    video, out, audio=audio, params=params, models=models, backend=backend
                )
            snap = common.clock_snapshot(clock)
            timed_wall = sum(s["wall_s"] for s in snap.values())
            timed_cpu = sum(s["cpu_s"] for s in snap.values())
            snap["other"] = {"wall_s": total.wall_s - timed_wall, "cpu_s": total.cpu_s - timed_cpu}
            clocks.append(snap)
            results.append(result)
            return result

        samples, result = common.repeat(once, repeats, warmup)
        profile_text = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
            preprocess_clip(video, out, audio=audio, params=params, models=models, backend=backend)
            profiler.stop()
            profile_text = profiler.output_text(unicode=False, color=False, show_all=False)
    models.close()
    steps = common.median_steps(clocks[warmup:])
    row = {
        "fixture": name,
        "video": video,
        **common.rates(samples, result.input_frames),
        "output_frames": result.num_frames,
        "input_fps": result.input_fps,
        "width": result.width,
        "height": result.height,
        "frames_with_face": result.frames_with_face,
        "mfcc_windows": result.num_windows,
        "model_load_s": load.wall_s,
        "steps": {s: steps.get(s, {"wall_s": 0.0, "cpu_s": 0.0}) for s in STEPS},
        "peak_rss_mib": common.peak_rss_mib(),
        "duration_s": result.num_frames / 25,
        "params": overrides or {},
    }
    if profile_text:
        row["profile"] = profile_text
    return row


def parse_overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings (dotted keys for nested sections, e.g. ``landmarks.mesh_engine``)
    -> a dict that ``PreprocessParams`` validates (and coerces)."""
    pairs = [item.split("=", 1) for item in items]
    if any(len(pair) != 2 for pair in pairs):
        raise SystemExit(f"--compare takes KEY=VALUE, got {items}")
    out: dict = {}
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = common.fixture_parser(__doc__)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--profile", action="store_true", help="add a pyinstrument profile")
    parser.add_argument(
        "--compare", nargs="+", default=[], metavar="KEY=VALUE", help="also measure these params"
    )
    args = parser.parse_args(argv)
    common.require_fixtures(parser)
    overrides = parse_overrides(args.compare)
    rows, compare_rows = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eamm-bench-") as tmp:
        clips = common.clips_for(args, Path(tmp))
        cases = [(c, args.repeats, args.warmup, args.profile) for c in clips]
        if args.long:
            base = common.FIXTURE_CLIPS["mead_1080p"]
            if args.frames:
                base = common.trimmed(base, args.frames, Path(tmp))
            cases.append((common.looped(base, args.long, Path(tmp)), 1, 0, False))
        for index, (clip, repeats, warmup, profile) in enumerate(cases):
            runs = [(rows, None)]
            if overrides and index < len(clips):
                runs.append((compare_rows, overrides))
            for out, changed in runs:
                label = f" with {changed}" if changed else ""
                common.log(f"ours {clip.name}{label} x{repeats} ...")
                row = common.run_clip(
                    measure_clip, clip, repeats, warmup, profile and not changed, changed
                )
                out.append(row)
                common.log_rate(row)
    meta = common.machine_meta() | {"bench_seconds": round(time.perf_counter() - start, 1)}
    payload = {"meta": meta, "rows": rows}
    if compare_rows:
        payload["compare_rows"] = compare_rows
    common.write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
