"""The preprocessing flow's orchestration at dataset scale: a stand-in clip worker, all else real.

For each N, a temporary LRW-layout raw tree of N tiny files (``lipread_mp4/<WORD>/<split>/
<WORD>_<nnnnn>.mp4``, 500 words, train:val:test as LRW's 1000:50:50; each file a few dozen
bytes, which is all indexing and fingerprinting read) is indexed by the real index flow and then
processed by the real ``flows.preprocess.run_preprocess("lrw", ...)`` with the threads runner:
batching, Prefect task runs, the journal, packing into shards, manifest and run log. Only the
per-clip worker is replaced: ``eamm.preprocess.dataset.preprocess_clip`` (the name
``process_entry`` calls) is patched, in the measuring process only, by a stand-in that writes the
five output files (a few bytes for ``frames.mp4``/``audio.wav``, valid float32 ``.npy`` files
of one frame: mfcc (1, 28, 13), landmarks (1, 68, 2), pose (1, 7)) and returns a
``ClipResult`` with plausible fields. The face models are still loaded once per worker thread.

Each N runs in a fresh process with a fresh ``PREFECT_HOME`` (so ``PREFECT_API_URL`` is unset
there and Prefect starts its temporary API server, with its own SQLite database, as a plain
``eamm preprocess`` does). Measured: wall seconds of the preprocess flow (index flow apart), ms
per clip, peak RSS of the flow process (``ru_maxrss``) and of the Prefect server (sampled by a
thread: its RSS and its kernel high-water mark ``VmHWM``), the Prefect database size (database,
WAL and shared memory files, once the server has settled: ``settle_s`` is how long it kept
writing after the flow returned, not counted in the flow's wall time), the manifest's and run
log's sizes, the wall seconds of a no-op re-run (everything reused) in the same process, and the
peak RSS of another no-op re-run in a fresh process, as a user's second ``eamm preprocess`` is
(in the first run's process it would reuse memory the first run's allocators kept). Then
``wall = a + b*N`` and ``RSS = c + d*N`` are fitted by least squares over the measured N.

    python benchmarks/orchestration.py --clips 10000 100000 500000 --workers 2
    python benchmarks/orchestration.py --clips 500 --out /tmp/orchestration.json

Disk: every clip is staged as five files before packing, so with its raw file and its shard
members a run needs about 40 KiB per clip (20 GiB at 500k) at its peak; ``--work DIR`` puts the
trees, outputs and Prefect databases there (default: the system's temporary folder).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # first: pins thread pools before numpy/cv2 load

WORDS = 500
# LRW's clips per word: 1000 train, 50 val, 50 test
SPLIT_CYCLE = ("train",) * 20 + ("val", "test")
STAND_IN_FRAMES = 1
SETTLE_S = 2.0  # the database is settled when its size has not changed for this long
SETTLE_MAX_S = 300.0
SERVER_MARKER = "uvicorn"


def lrw_words(count: int) -> list[str]:
    """``count`` distinct A-Z words (AAA, AAB, ...)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [letters[i // 676 % 26] + letters[i // 26 % 26] + letters[i % 26] for i in range(count)]


def build_tree(clips: int, raw: Path) -> None:
    """``clips`` tiny files in LRW's layout: clip i goes to word i mod 500, and each word's
    clips to train, val and test as 20:1:1."""
    words = lrw_words(min(WORDS, clips))
    made: set[Path] = set()
    for i in range(clips):
        word = words[i % len(words)]
        k = i // len(words)
        split = SPLIT_CYCLE[k % len(SPLIT_CYCLE)]
        folder = raw / "lipread_mp4" / word / split
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (folder / f"{word}_{k + 1:05d}.mp4").write_bytes(f"stand-in clip {i}\n".encode())


def _npy(shape: tuple[int, ...]) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape, dtype=np.float32))
    return buffer.getvalue()


def stand_in_outputs() -> dict[str, bytes]:
    """The five output files' bytes (``eamm.manifest.OUTPUT_FILES``), with valid .npy headers
    of the shapes ``eamm.manifest.npy_shapes`` expects for ``STAND_IN_FRAMES`` frames."""
    from eamm.manifest import OUTPUT_FILES, npy_shapes

    outputs = {name: _npy(shape) for name, shape in npy_shapes(STAND_IN_FRAMES).items()}
    outputs["frames.mp4"] = b"stand-in frames.mp4\n"
    outputs["audio.wav"] = b"stand-in audio.wav\n"
    assert set(outputs) == set(OUTPUT_FILES)
    return outputs


def install_stand_in() -> None:
    """Replace the per-clip worker ``process_entry`` calls (in this process only)."""
    import eamm.preprocess.dataset as dataset
    from eamm.preprocess.clip import ClipResult

    outputs = stand_in_outputs()

    def preprocess_clip(video, out_dir, audio=None, params=None, models=None, backend=None):
        start = time.perf_counter()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in outputs.items():
            (out_dir / name).write_bytes(data)
        return ClipResult(
            video=str(video),
            audio=str(audio) if audio else None,
            out_dir=str(out_dir),
            num_frames=STAND_IN_FRAMES,
            num_windows=STAND_IN_FRAMES,
            input_frames=29,
            input_fps=25.0,
            width=256,
            height=256,
            faces_detected=1,
            frames_with_face=STAND_IN_FRAMES,
            audio_source="file" if audio else "video",
            audio_diff_samples=0,
            mfcc_end_pad=0,
            transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            landmark_backend="mediapipe",
            seconds=time.perf_counter() - start,
        )

    dataset.preprocess_clip = preprocess_clip


def _vm_hwm_mib(pid: int) -> float:
    """The kernel's high-water mark of a live process's resident memory (0 where unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


class ServerWatch:
    """Samples the RSS of this process's Prefect server (a child whose command line holds
    ``uvicorn``) in a thread: the largest sample and the largest ``VmHWM`` read."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.pid: int | None = None
        self.peak_rss_mib = 0.0
        self.peak_hwm_mib = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-watch", daemon=True)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def _find(self):
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                if SERVER_MARKER in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        return None

    def sample(self) -> None:
        import psutil

        try:
            server = psutil.Process(self.pid) if self.pid else self._find()
            if server is None:
                return
            self.pid = server.pid
            rss = server.memory_info().rss / 2**20
        except psutil.Error:
            return
        self.samples += 1
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        self.peak_hwm_mib = max(self.peak_hwm_mib, _vm_hwm_mib(self.pid))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    @property
    def peak_mib(self) -> float | None:
        return max(self.peak_rss_mib, self.peak_hwm_mib) if self.samples else None


def _mib(paths) -> float:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total / 2**20


def db_mib(home: Path) -> float:
    """Prefect's SQLite database under ``home``: the file, its WAL and shared memory."""
    return _mib(home.glob("prefect.db*"))


def tree_mib(root: Path) -> float:
    return _mib(p for p in root.rglob("*") if p.is_file())


def settle(home: Path) -> float:
    """Wait until the server has written what the run sent it (the database stops growing);
    the seconds waited."""
    start = time.perf_counter()
    last, since = db_mib(home), time.perf_counter()
    while time.perf_counter() - start < SETTLE_MAX_S:
        time.sleep(0.25)
        size = db_mib(home)
        if size != last:
            last, since = size, time.perf_counter()
        elif time.perf_counter() - since >= SETTLE_S:
            break
    return time.perf_counter() - start - SETTLE_S


def stop_servers() -> None:
    """Stop the temporary server now (a spawned worker exits without running atexit hooks)."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        if server.running:
            server.stop()


def isolated_setup(prefect_home: str) -> None:
    """A measuring process's environment: its own Prefect home and temporary server, the
    threads runner (the stand-in lives in this process), pinned BLAS threads, the stand-in."""
    os.environ["PREFECT_HOME"] = prefect_home
    os.environ.pop("PREFECT_API_URL", None)  # a temporary server with the fresh database
    os.environ.pop("EAMM_TASK_RUNNER", None)  # threads: the stand-in lives in this process
    common.pin_threads()
    install_stand_in()


def run_n(raw: str, out: str, prefect_home: str, workers: int, params_path: str) -> dict:
    """Runs in a fresh process: index flow, the preprocess flow with the stand-in, a re-run."""
    started = time.perf_counter()
    isolated_setup(prefect_home)
    import psutil
    import pyarrow.parquet as pq

    from eamm.config import PreprocessRunParams, load_section
    from eamm.manifest import MANIFEST_NAME, RUN_LOG_NAME, read_run_log
    from flows.index import index_flow
    from flows.preprocess import DEFAULT_BATCH_SIZE, run_preprocess

    home, out_root = Path(prefect_home), Path(out)
    imported = time.perf_counter()
    index_path = str(out_root / "index.parquet")
    with ServerWatch() as server:
        with common.timed() as index:
            index_flow("lrw", index_path, raw=raw, params_path=params_path)
        rss_before_mib = psutil.Process().memory_info().rss / 2**20
        options = dict(
            raw=raw,
            index_path=index_path,
            params_path=params_path,
            workers=workers,
            runner="threads",
        )
        with common.timed() as flow:
            summary = run_preprocess("lrw", out, **options)
        flow_peak_mib = common.peak_rss_mib()
        settle_s = settle(home)
        db_after_run = db_mib(home)
        with common.timed() as rerun:
            again = run_preprocess("lrw", out, **options)
        rerun_settle_s = settle(home)
    db_after_rerun = db_mib(home)
    home_mib = tree_mib(home)
    stop_servers()
    rows = pq.read_table(out_root / MANIFEST_NAME).to_pylist()
    measured = read_run_log(out_root / RUN_LOG_NAME)
    clips = len(rows)
    run = load_section(params_path, "preprocess_run", PreprocessRunParams)
    batch = run.batch_size.get("lrw", DEFAULT_BATCH_SIZE)
    return {
        "clips": clips,
        "ok": sum(r["status"] == "ok" for r in rows),
        "workers": workers,
        "batch_size": batch,
        "batches": -(-clips // batch),
        "shards": summary["shards"],
        "import_s": imported - started,
        "index_wall_s": index.wall_s,
        "flow_wall_s": flow.wall_s,
        "flow_cpu_s": flow.cpu_s,
        "ms_per_clip": 1000 * flow.wall_s / max(clips, 1),
        "clip_work_s": sum(m["processing_seconds"] or 0.0 for m in measured.values()),
        "processed": summary["processed"],
        "rss_before_flow_mib": rss_before_mib,
        "flow_peak_rss_mib": flow_peak_mib,
        "process_peak_rss_mib": common.peak_rss_mib(),
        "server_pid": server.pid,
        "server_peak_rss_mib": server.peak_mib,
        "server_rss_samples": server.samples,
        "settle_s": settle_s,
        "prefect_db_mib": db_after_run,
        "prefect_db_after_rerun_mib": db_after_rerun,
        "prefect_home_mib": home_mib,
        "manifest_mib": _mib([out_root / MANIFEST_NAME]),
        "run_log_mib": _mib([out_root / RUN_LOG_NAME]),
        "shards_mib": tree_mib(out_root / "shards"),
        "rerun_wall_s": rerun.wall_s,
        "rerun_settle_s": rerun_settle_s,
        "rerun_processed": again["processed"],
        "rerun_reused": again["reused"],
        "rerun_shards_written": again["shards_written"],
    }


def fresh_rerun(raw: str, out: str, prefect_home: str, workers: int, params_path: str) -> dict:
    """Runs in a fresh process: a no-op re-run of the preprocess flow, its own peak RSS."""
    isolated_setup(prefect_home)
    from flows.preprocess import run_preprocess

    index_path = str(Path(out) / "index.parquet")
    options = dict(raw=raw, index_path=index_path, params_path=params_path, workers=workers)
    with common.timed() as rerun:
        again = run_preprocess("lrw", out, runner="threads", **options)
    stop_servers()
    return {
        "rerun_peak_rss_mib": common.peak_rss_mib(),
        "fresh_rerun_wall_s": rerun.wall_s,
        "fresh_rerun_reused": again["reused"],
    }


def fit_line(xs: list[float], ys: list[float | None]) -> dict | None:
    """Least-squares ``y = a + b*x`` (None with fewer than two distinct x)."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if len({x for x, _ in pairs}) < 2:
        return None
    import numpy as np

    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(x), x], axis=1), y, rcond=None)
    residual = y - (a + b * x)
    return {
        "intercept": float(a),
        "slope": float(b),
        "points": len(pairs),
        "max_abs_residual": float(np.abs(residual).max()),
    }


def fits(rows: list[dict]) -> dict:
    """wall = a + b*N (s, s/clip) and RSS = c + d*N (MiB, MiB/clip) for the flow and server."""
    n = [r["clips"] for r in rows]
    return {
        "flow_wall_s": fit_line(n, [r["flow_wall_s"] for r in rows]),
        "flow_peak_rss_mib": fit_line(n, [r["flow_peak_rss_mib"] for r in rows]),
        "server_peak_rss_mib": fit_line(n, [r["server_peak_rss_mib"] for r in rows]),
        "prefect_db_mib": fit_line(n, [r["prefect_db_mib"] for r in rows]),
        "rerun_wall_s": fit_line(n, [r["rerun_wall_s"] for r in rows]),
        "rerun_peak_rss_mib": fit_line(n, [r.get("rerun_peak_rss_mib") for r in rows]),
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| N | wall s | ms/clip | flow peak RSS MiB | server peak RSS MiB | Prefect DB MiB "
        "| no-op re-run s | fresh re-run peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            str(r["clips"]),
            _num(r["flow_wall_s"], 1),
            _num(r["ms_per_clip"], 2),
            _num(r["flow_peak_rss_mib"], 0),
            _num(r["server_peak_rss_mib"], 0),
            _num(r["prefect_db_mib"], 1),
            _num(r["rerun_wall_s"], 1),
            _num(r.get("rerun_peak_rss_mib"), 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_fits(found: dict) -> str:
    units = {
        "flow_wall_s": ("s", "ms", 1000),
        "flow_peak_rss_mib": ("MiB", "KiB", 1024),
        "server_peak_rss_mib": ("MiB", "KiB", 1024),
        "prefect_db_mib": ("MiB", "KiB", 1024),
        "rerun_wall_s": ("s", "ms", 1000),
        "rerun_peak_rss_mib": ("MiB", "KiB", 1024),
    }
    lines = []
    for key, fit in found.items():
        if fit is None:
            continue
        unit, per, scale = units[key]
        lines.append(
            f"{key} = {fit['intercept']:.2f} {unit} + {fit['slope'] * scale:.3f} {per}/clip * N "
            f"(max residual {fit['max_abs_residual']:.2f} {unit}, {fit['points']} points)"
        )
    return "\n".join(lines) or "(fits need at least two sizes)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--clips", nargs="+", type=int, default=[10000, 100000, 500000], help="tree sizes N"
    )
    parser.add_argument("--workers", type=int, default=2, help="threads of the task runner")
    parser.add_argument(
        "--out",
        "--json",
        dest="out",
        default=str(common.RESULTS / "orchestration.json"),
        help="results JSON",
    )
    parser.add_argument("--params", default=str(common.ROOT / "params.yaml"))
    parser.add_argument("--work", help="folder for the temporary trees (default: system temp)")
    args = parser.parse_args(argv)
    if min(args.clips) < 1 or args.workers < 1:
        parser.error("--clips and --workers must be positive")
    rows = []
    for clips in args.clips:
        with tempfile.TemporaryDirectory(prefix="eamm-orch-", dir=args.work) as tmp:
            work = Path(tmp)
            raw, out, home = work / "raw", work / "processed", work / "prefect"
            home.mkdir()
            common.log(f"N={clips}: building the tree ...")
            with common.timed() as build:
                build_tree(clips, raw)
            common.log(f"N={clips}: index + preprocess flow, workers {args.workers} ...")
            row = common.run_isolated(
                run_n, str(raw), str(out), str(home), args.workers, args.params
            )
            row["build_s"] = build.wall_s
            row |= common.run_isolated(
                fresh_rerun, str(raw), str(out), str(home), args.workers, args.params
            )
            rows.append(row)
            common.log(
                f"  {row['flow_wall_s']:.1f} s wall ({row['ms_per_clip']:.2f} ms/clip), "
                f"flow peak RSS {row['flow_peak_rss_mib']:.0f} MiB, "
                f"server {_num(row['server_peak_rss_mib'], 0)} MiB, "
                f"DB {row['prefect_db_mib']:.1f} MiB, re-run {row['rerun_wall_s']:.1f} s"
            )
            # after each size, so a long series keeps what it measured
            found = fits(rows)
            common.write_json(
                args.out, {"meta": common.machine_meta(), "rows": rows, "fits": found}
            )
    print(table(rows))
    print()
    print(describe_fits(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
