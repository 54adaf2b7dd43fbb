"""The floor: what any clip job must at least pay, measured piece by piece on the same clips.

Per fixture, single-threaded: ``decode_ffmpeg`` (the ffmpeg CLI, one decoder thread, ``-f null``,
process start-up included), ``decode`` (PyAV, as our decoder runs), ``decode_warp`` (decode +
``cv2.warpAffine`` of the YUV planes to a 256x256 crop + crop-sized YUV->RGB, eamm.video.warp),
``encode`` (H.264 of the crops with the params' encoder, preset, crf and pix_fmt; the other
encoder is measured too, as ``alternatives.encode_ffmpeg`` or ``alternatives.encode_pyav``),
``landmarker`` (mediapipe face mesh in tracking mode alone, per 256x256 crop) and ``onepass``
(decode -> 25 fps -> warp -> encode in one pass). ``floor`` = ``onepass`` + ``landmarker``: the
cheapest job that gives aligned crops with per-frame landmarks. The crop transform is the one
our pipeline finds for the clip, so warp and landmarker see the real face crops.

    python benchmarks/preprocess_floor.py --json benchmarks/results/preprocess_floor.json
    python benchmarks/preprocess_floor.py --frames 8 --repeats 1 --fixtures lrw_256p
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/cv2 load


def measure_clip(name: str, video: str, audio: str | None, repeats: int, warmup: int) -> dict:
    """Runs in a fresh process: each floor piece's medians over ``repeats``."""
    common.pin_threads()
    import numpy as np

    from eamm.config import PreprocessParams
    from eamm.face.landmarks import FaceModels
    from eamm.media.encode import PyAVVideoWriter, VideoWriter
    from eamm.preprocess import preprocess_clip
    from eamm.preprocess.clip import crop_writer
    from eamm.video.decode import decode_frames, open_video, resample_fps, stream_info
    from eamm.video.warp import warp_to_crop

    params = PreprocessParams()
    size = params.crop_size
    models = FaceModels.from_params(params.landmarks)
    container, stream = open_video(video, 1)
    info = stream_info(stream)
    container.close()
    cases: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="eamm-floor-") as tmp:
        work = Path(tmp)
        result = preprocess_clip(video, work / "ours", audio=audio, params=params, models=models)
        matrix = np.array(result.transform, dtype=np.float64).reshape(2, 3)
        input_frames, output_frames = result.input_frames, result.num_frames

        def ffmpeg_decode() -> None:
            cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-i", video]
            subprocess.run([*cmd, "-map", "0:v:0", "-f", "null", "-"], check=True)

        def decode() -> int:
            return sum(1 for _ in decode_frames(video, 1))

        def decode_warp() -> list:
            return [warp_to_crop(f, matrix, size) for f in decode_frames(video, 1)]

        def output_crops() -> list:
            frames = resample_fps(decode_frames(video, 1), params.fps, info.fps)
            return [warp_to_crop(f, matrix, size) for f in frames]

        crops = output_crops()

        other = "ffmpeg" if params.encoder == "pyav" else "pyav"

        def writer(encoder: str = params.encoder) -> PyAVVideoWriter | VideoWriter:
            return crop_writer(work / "floor.mp4", params.model_copy(update={"encoder": encoder}))

        def encode(encoder: str = params.encoder) -> None:
            with writer(encoder) as out:
                for crop in crops:
                    out.write(crop)

        def landmarker() -> int:
            models.reset_tracking()
            return sum(models.track(crop) is not None for crop in crops)

        def onepass() -> None:
            with writer() as out:
                for frame in resample_fps(decode_frames(video, 1), params.fps, info.fps):
                    out.write(warp_to_crop(frame, matrix, size))

        plan = [
            ("decode_ffmpeg", ffmpeg_decode, input_frames),
            ("decode", decode, input_frames),
            ("decode_warp", decode_warp, input_frames),
            ("encode", encode, output_frames),
            ("landmarker", landmarker, output_frames),
            ("onepass", onepass, input_frames),
        ]
        for case, fn, frames in plan:
            samples, _ = common.repeat(fn, repeats, warmup)
            cases[case] = common.rates(samples, frames)
            cases[case]["ms_per_frame_cpu"] = 1000 * cases[case]["cpu_s"] / frames
        samples, _ = common.repeat(lambda: encode(other), repeats, warmup)
        alternative = common.rates(samples, output_frames)
        alternative["ms_per_frame_cpu"] = 1000 * alternative["cpu_s"] / output_frames
    models.close()
    floor_cpu = cases["onepass"]["cpu_s"] + cases["landmarker"]["cpu_s"]
    floor_wall = cases["onepass"]["wall_s"] + cases["landmarker"]["wall_s"]
    cases["floor"] = {
        "frames": input_frames,
        "cpu_s": floor_cpu,
        "wall_s": floor_wall,
        "fps_per_core": input_frames / floor_cpu,
        "fps_wall": input_frames / floor_wall,
        "derived": "onepass + landmarker",
    }
    return {
        "fixture": name,
        "video": video,
        "width": info.width,
        "height": info.height,
        "pix_fmt": info.pix_fmt,
        "input_fps": float(info.fps),
        "input_frames": input_frames,
        "output_frames": output_frames,
        "repeats": repeats,
        "cases": cases,
        "alternatives": {f"encode_{other}": alternative},
        "peak_rss_mib": common.peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = common.fixture_parser(__doc__)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per case first")
    args = parser.parse_args(argv)
    common.require_fixtures(parser)
    rows = []
    with tempfile.TemporaryDirectory(prefix="eamm-bench-") as tmp:
        for clip in common.clips_for(args, Path(tmp)):
            common.log(f"floor {clip.name} x{args.repeats} ...")
            row = common.run_clip(measure_clip, clip, args.repeats, args.warmup)
            rows.append(row)
            summary = ", ".join(
                f"{case} {r['fps_per_core']:.0f}" for case, r in row["cases"].items()
            )
            common.log(f"  fps/core: {summary}")
    common.write_json(args.json, {"meta": common.machine_meta(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
