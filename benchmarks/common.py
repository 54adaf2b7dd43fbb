"""Helpers shared by the benchmark scripts: single-threaded settings, CPU/wall timing, peak RSS,
fixture clips (trimmed or looped copies in a temporary folder), isolated runs and JSON output.

Import this module before numpy/cv2/torch: it pins the thread pools to one thread at import time,
so every number is per core and comparable between the EAMM recipe, the floor and ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
}
for _key, _value in THREAD_ENV.items():
    os.environ.setdefault(_key, _value)
for _key, _value in {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "GLOG_minloglevel": "2",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
VENV_BIN = Path(sys.executable).parent
if str(VENV_BIN) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

FIXTURES = Path(os.environ.get("EAMM_FIXTURES", ROOT.parent / "shared" / "fixtures"))
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Fixture:
    """One benchmark clip: the video, its separate audio (MEAD ships one) and a label."""

    name: str
    video: Path
    audio: Path | None = None


FIXTURE_CLIPS = {
    "mead_1080p": Fixture(
        "mead_1080p",
        FIXTURES / "mead/M030/video/front/sad/level_3/001.mp4",
        FIXTURES / "mead/M030/audio/sad/level_3/001.m4a",
    ),
    "lrw_256p": Fixture("lrw_256p", FIXTURES / "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"),
}


def pin_threads() -> None:
    """One thread for OpenCV and torch (when imported): per-core numbers."""
    import cv2

    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (ffmpeg subprocesses)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _maxrss_mib(who: int) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, else KiB


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (MiB)."""
    return _maxrss_mib(resource.RUSAGE_SELF)


def children_peak_rss_mib() -> float:
    """Largest high-water mark among finished children (the ffmpeg encoder, say)."""
    return _maxrss_mib(resource.RUSAGE_CHILDREN)


@dataclass
class Sample:
    wall_s: float
    cpu_s: float


@contextmanager
def timed() -> Iterator[Sample]:
    """Wall and CPU seconds (process + finished children) of the ``with`` body."""
    sample = Sample(0.0, 0.0)
    wall, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield sample
    finally:
        sample.wall_s = time.perf_counter() - wall
        sample.cpu_s = cpu_seconds() - cpu


def repeat(fn: Callable[[], Any], repeats: int, warmup: int = 0) -> tuple[list[Sample], Any]:
    """Run ``fn`` ``warmup`` + ``repeats`` times; the timed samples and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(repeats):
        with timed() as sample:
            result = fn()
        samples.append(sample)
    return samples, result


def rates(samples: list[Sample], frames: int) -> dict:
    """Medians of wall/CPU seconds and the frame rates they give. ``fps_per_core`` divides by
    CPU seconds (robust to a busy neighbour core); ``fps_wall`` by wall seconds."""
    wall = statistics.median(s.wall_s for s in samples)
    cpu = statistics.median(s.cpu_s for s in samples)
    return {
        "frames": frames,
        "repeats": len(samples),
        "wall_s": wall,
        "cpu_s": cpu,
        "wall_s_all": [round(s.wall_s, 4) for s in samples],
        "cpu_s_all": [round(s.cpu_s, 4) for s in samples],
        "fps_per_core": frames / cpu if cpu > 0 else None,
        "fps_wall": frames / wall if wall > 0 else None,
    }


def _call(fn: Callable[..., dict], args: tuple) -> dict:
    """Some library errors do not survive pickling: send their traceback as plain text."""
    try:
        return fn(*args)
    except Exception:
        raise RuntimeError(traceback.format_exc()) from None


def run_isolated(fn: Callable[..., dict], *args: Any) -> dict:
    """``fn(*args)`` in a fresh interpreter (spawn): its peak RSS is its own, not ours."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_call, fn, args).result()


def run_clip(
    fn: Callable[..., dict], clip: Fixture, repeats: int, warmup: int, *extra: Any
) -> dict:
    """``fn(name, video, audio or None, repeats, warmup, *extra)`` for one fixture clip, isolated:
    the call every per-clip benchmark makes."""
    audio = str(clip.audio) if clip.audio else None
    return run_isolated(fn, clip.name, str(clip.video), audio, repeats, warmup, *extra)


def log_rate(row: dict) -> None:
    """One line per measured clip: frames, CPU and wall rate, peak RSS."""
    log(
        f"  {row['frames']} frames: {row['fps_per_core']:.1f} fps/core "
        f"({row['fps_wall']:.1f} wall), peak RSS {row['peak_rss_mib']:.0f} MiB"
    )


def ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-threads", "1", *args]
    subprocess.run(cmd, check=True, capture_output=True)


def probe_frames(path: Path) -> int:
    """Number of decoded video frames (counted, not the header's guess)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return sum(1 for _ in container.decode(stream))


def trimmed(fixture: Fixture, frames: int, workdir: Path) -> Fixture:
    """The first ``frames`` frames of a fixture (re-encoded near-losslessly, audio cut to match):
    for tiny smoke runs."""
    out = workdir / f"{fixture.name}_{frames}f.mp4"
    if not out.exists():
        ffmpeg(
            "-i",
            str(fixture.video),
            *(["-i", str(fixture.audio), "-map", "0:v:0", "-map", "1:a:0"] * bool(fixture.audio)),
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-crf",
            "12",
            "-preset",
            "veryfast",
            "-shortest",
            str(out),
        )
    return Fixture(f"{fixture.name}_{frames}f", out)


def looped(fixture: Fixture, times: int, workdir: Path) -> Fixture:
    """The fixture concatenated with itself ``times`` times (ffmpeg concat demuxer, stream copy):
    a longer clip with the same content, to show memory does not grow with clip length."""
    out = workdir / f"{fixture.name}_x{times}.mp4"
    if not out.exists():
        video = workdir / f"{fixture.name}_video.mp4"
        shutil.copyfile(fixture.video, video)
        listing = workdir / f"{fixture.name}_concat.txt"
        listing.write_text("".join(f"file '{video.name}'\n" for _ in range(times)))
        inputs = ["-f", "concat", "-safe", "0", "-i", str(listing)]
        if fixture.audio:
            audio = workdir / f"{fixture.name}_audio.m4a"
            shutil.copyfile(fixture.audio, audio)
            alist = workdir / f"{fixture.name}_aconcat.txt"
            alist.write_text("".join(f"file '{audio.name}'\n" for _ in range(times)))
            inputs += ["-f", "concat", "-safe", "0", "-i", str(alist)]
            inputs += ["-map", "0:v:0", "-map", "1:a:0"]
        ffmpeg(*inputs, "-c", "copy", str(out))
    return Fixture(f"{fixture.name}_x{times}", out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta() -> dict:
    """What the numbers were measured on, including how busy the machine was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None, None, None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "loadavg_1_5_15": [round(v, 2) for v in load] if load[0] is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def base_parser(doc: str | None, repeats: int = 3) -> argparse.ArgumentParser:
    """The options every benchmark script shares: ``--json OUT`` and ``--repeats``."""
    parser = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument(
        "--repeats", type=int, default=repeats, help="timed runs per case (median reported)"
    )
    return parser


def fixture_parser(doc: str | None, repeats: int = 3) -> argparse.ArgumentParser:
    """``base_parser`` plus which fixture clips to use and how to shorten them for smoke runs."""
    parser = base_parser(doc, repeats)
    parser.add_argument(
        "--fixtures", nargs="+", choices=sorted(FIXTURE_CLIPS), default=sorted(FIXTURE_CLIPS)
    )
    parser.add_argument("--frames", type=int, help="use only the first N frames (smoke runs)")
    parser.add_argument(
        "--long", type=int, default=0, metavar="K", help="also a K-times concatenated MEAD clip"
    )
    return parser


def require_fixtures(parser: argparse.ArgumentParser) -> None:
    if not FIXTURES.is_dir():
        parser.exit(2, f"shared fixtures not found at {FIXTURES} (set EAMM_FIXTURES)\n")


def clips_for(args: argparse.Namespace, workdir: Path) -> list[Fixture]:
    """The fixtures the options ask for, trimmed with ``--frames``."""
    clips = [FIXTURE_CLIPS[name] for name in args.fixtures]
    if args.frames:
        clips = [trimmed(c, args.frames, workdir) for c in clips]
    return clips


def write_json(path: str | Path | None, payload: dict) -> None:
    if path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StepClock:
    """Exclusive wall/CPU seconds per named step, nesting-aware: a step's own time excludes the
    steps timed inside it, unless an enclosing step ``absorbs`` them (counts them as its own)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [name, absorb, child_wall, child_cpu]

    @contextmanager
    def step(self, name: str, absorb: bool = False) -> Iterator[None]:
        if any(frame[1] for frame in self._stack):
            yield
            return
        frame = [name, absorb, 0.0, 0.0]
        self._stack.append(frame)
        wall, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            d_wall, d_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            self._stack.pop()
            self.wall[name] = self.wall.get(name, 0.0) + d_wall - frame[2]
            self.cpu[name] = self.cpu.get(name, 0.0) + d_cpu - frame[3]
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._stack:
                self._stack[-1][2] += d_wall
                self._stack[-1][3] += d_cpu

    def wrap(self, name: str, fn: Callable, absorb: bool = False) -> Callable:
        """``fn`` with each call timed as ``name``."""

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with self.step(name, absorb):
                return fn(*args, **kwargs)

        return timed_call

    def wrap_iter(self, name: str, gen_fn: Callable[..., Iterator]) -> Callable[..., Iterator]:
        """A generator function whose every ``next()`` is timed as ``name``."""

        def timed_gen(*args: Any, **kwargs: Any) -> Iterator:
            iterator = iter(gen_fn(*args, **kwargs))
            while True:
                with self.step(name):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item

        return timed_gen

    def add(self, name: str, wall: float, cpu: float) -> None:
        """Time measured elsewhere (a child process's CPU, say)."""
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def reset(self) -> None:
        self.wall, self.cpu, self.calls = {}, {}, {}


def median_steps(clocks: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per step, the median over repeats of its wall and CPU seconds."""
    names = list(dict.fromkeys(name for clock in clocks for name in clock))
    return {
        name: {
            key: statistics.median(clock.get(name, {}).get(key, 0.0) for clock in clocks)
            for key in ("wall_s", "cpu_s")
        }
        for name in names
    }


def clock_snapshot(clock: StepClock) -> dict[str, dict[str, float]]:
    return {n: {"wall_s": clock.wall[n], "cpu_s": clock.cpu.get(n, 0.0)} for n in clock.wall}
