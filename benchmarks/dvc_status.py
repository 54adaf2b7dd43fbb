"""Seconds of `dvc status` and a no-op `dvc repro` on a processed tree of many clips.

A processed tree is a DVC output (``persist: true``) of its preprocess stage and a dependency of
each training stage, and DVC 3 hashes it (walks every folder and file, looks each file up in its
state database, checks every cache object) once per reference on every `dvc status` / `dvc repro`.
This builds a throwaway git + DVC project in a temporary folder: a `preprocess` stage whose output
is a tree of ``--clips`` clips and ``--consumers`` `train_*` stages depending on it, records them
with `dvc commit`, then times the real CLI.

The tree is cheap: one real clip's output files (the first ok clip of the manifest under
``--source``, else random bytes of the demo's sizes) are reused for every clip; the smallest file
of each clip gets unique bytes, so every clip has its own hashes. Folder layouts hard-link the
rest (the project's ``cache.type`` is ``hardlink`` by default so the commit does not copy the
tree). Layouts (same clips):

* ``packed``: the pipeline's layout (``eamm/shards.py``): the clips of an LRW word and split in
  one tar shard written by the pipeline's own ``write_shard`` (``--clips-per-tar`` clips per
  word, split like LRW: about 90 % train, 5 % val, 5 % test) + the manifest; consumers depend on
  the manifest, as in dvc.yaml;
* the per-clip folder layouts it replaced, kept for comparison: ``flat`` (one output folder,
  consumers depend on it), ``manifest`` (one output folder, consumers depend on its
  ``manifest.parquet`` only) and ``sharded`` (``--shards`` output folders ``shard_<k>/clips/...``
  picked by the clip's group + the manifest as its own output; consumers on the manifest).

Timed as subprocesses (interpreter start-up and imports included, as a user sees it). Cold runs
use an empty DVC site cache (no state database: every file is hashed again, as after copying the
data to another machine or touching it; file contents are in the page cache); warm runs reuse the
site cache filled by the commit. Reported are medians; every run must find nothing to do.

    python benchmarks/dvc_status.py                          # 20k clips, every layout
    python benchmarks/dvc_status.py --layouts packed --merge  # re-measure one, keep the others
    python benchmarks/dvc_status.py --clips 50 --runs 1 --json /tmp/dvc_status.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from eamm.manifest import MANIFEST_NAME, OUTPUT_FILES, members, read_rows  # noqa: E402
from eamm.shards import shard_of, write_shard  # noqa: E402

# Sizes of one demo LRW clip (256 px crops, 29 frames), used when no processed clip is found.
SYNTHETIC_BYTES = {
    "frames.mp4": 85_000,
    "audio.wav": 37_164,
    "mfcc.npy": 42_352,
    "landmarks.npy": 15_904,
    "pose.npy": 940,
}
UP_TO_DATE = "Data and pipelines are up to date."
LAYOUTS = ("flat", "manifest", "sharded", "packed")
SPLITS = ("train",) * 18 + ("val", "test")  # LRW-like proportions
DVC_ENV = {"DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "GIT_TERMINAL_PROMPT": "0"}


def prototype(source: Path, into: Path) -> tuple[Path, str]:
    """One clip's output files in ``into`` (the first ok clip of ``source``'s manifest if there
    is one) and where they came from."""
    into.mkdir(parents=True)
    manifest = source / MANIFEST_NAME
    try:
        row = next(r for r in read_rows(manifest) if r["status"] == "ok")
    except Exception:  # no manifest, an older layout, no ok clip: synthetic bytes
        row = None
    for name in OUTPUT_FILES:
        data = (
            members(row, source)[name].read()
            if row is not None
            else os.urandom(SYNTHETIC_BYTES.get(name, 16_384))
        )
        (into / name).write_bytes(data)
    if row is not None:
        shutil.copyfile(manifest, into / MANIFEST_NAME)
    else:
        (into / MANIFEST_NAME).write_bytes(os.urandom(32_768))
    return into, f"{source}: {row['clip_id']}" if row is not None else "synthetic"


def link(src: Path, dst: Path) -> None:
    """Hard link (no extra disk), a copy where the file system refuses."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def clip_path(index: int, clips: int) -> tuple[str, Path]:
    """Group and relative folder of clip ``index``: ~40 clips per group, at most 500 groups."""
    groups = min(500, max(1, clips // 40))
    group = f"G{index % groups:03d}"
    return group, Path(SPLITS[index % len(SPLITS)]) / group / f"{group}_{index:06d}"


def folder_shard(group: str, shards: int) -> str:
    return f"shard_{zlib.crc32(group.encode()) % shards:02d}"


def build_tree(proto: Path, processed: Path, clips: int, sharded: bool, shards: int) -> None:
    """The processed tree: clip folders (under shard folders if ``sharded``) + the manifest."""
    names = list(OUTPUT_FILES)
    unique = min(names, key=lambda n: (proto / n).stat().st_size)
    unique_bytes = (proto / unique).read_bytes()
    processed.mkdir(parents=True)
    for index in range(clips):
        group, rel = clip_path(index, clips)
        base = processed / folder_shard(group, shards) if sharded else processed
        folder = base / "clips" / rel
        folder.mkdir(parents=True)
        for name in names:
            if name == unique:
                # same size and header, clip-specific tail: distinct hash per clip
                tail = index.to_bytes(8, "little")
                (folder / name).write_bytes(unique_bytes[: -len(tail)] + tail)
            else:
                link(proto / name, folder / name)
    shutil.copyfile(proto / MANIFEST_NAME, processed / MANIFEST_NAME)


def build_packed(proto: Path, processed: Path, clips: int, per_word: int) -> None:
    """The clips in the pipeline's tar shards (one per LRW-like word and split) + the manifest."""
    names = list(OUTPUT_FILES)
    unique = min(names, key=lambda n: (proto / n).stat().st_size)
    unique_bytes = (proto / unique).read_bytes()
    uniques = processed.parent / "unique"
    uniques.mkdir()
    groups: dict[str, dict] = {}
    for index in range(clips):
        word = f"W{index // per_word:04d}"
        split = SPLITS[index % len(SPLITS)]
        clip_id = f"{split}/{word}/{word}_{index:06d}"
        tail = index.to_bytes(8, "little")
        own = uniques / f"{index}.{unique}"
        own.write_bytes(unique_bytes[: -len(tail)] + tail)
        files = {name: own if name == unique else proto / name for name in names}
        groups.setdefault(shard_of(clip_id), {})[clip_id] = files
    for shard, group in groups.items():
        write_shard(processed / shard, group)
    shutil.rmtree(uniques)
    shutil.copyfile(proto / MANIFEST_NAME, processed / MANIFEST_NAME)


def stage_paths(processed: Path, layout: str) -> tuple[list[str], list[str]]:
    """Outputs of the preprocess stage and dependencies of each consumer stage."""
    manifest = f"processed/{MANIFEST_NAME}"
    if layout == "flat":
        return ["processed"], ["processed"]
    if layout in ("manifest", "packed"):
        return ["processed"], [manifest]
    shards = [f"processed/{p.name}" for p in sorted(processed.iterdir()) if p.is_dir()]
    return [*shards, manifest], [manifest]


def dvc_yaml(outs: list[str], deps: list[str], consumers: int) -> str:
    """A preprocess stage and ``consumers`` training stages; their commands fail if ever run."""
    lines = ["stages:", "  preprocess:", "    cmd: exit 1", "    deps: [raw.txt]", "    outs:"]
    lines += [f"      - {out}:\n          persist: true" for out in outs]
    for k in range(consumers):
        lines += [f"  train_{k}:", "    cmd: exit 1", "    deps:"]
        lines += [f"      - {dep}" for dep in deps]
        lines += [f"    outs: [model_{k}.pt]"]
    return "\n".join([*lines, ""])


def dvc(project: Path, site_cache: Path, *args: str) -> tuple[float, str]:
    """Run the real DVC CLI; seconds and combined output."""
    env = os.environ | DVC_ENV | {"DVC_SITE_CACHE_DIR": str(site_cache)}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed in {project}:\n{output}")
    return seconds, output


def timed_noop(project: Path, site_cache: Path, command: str) -> float:
    """Seconds of `dvc status` or `dvc repro`, which must find nothing to do."""
    seconds, output = dvc(project, site_cache, command)
    ran = "Running stage" in output
    if ran or (command == "status" and UP_TO_DATE not in output):
        raise RuntimeError(f"dvc {command} found work to do in {project}:\n{output}")
    return seconds


def measure_layout(
    work: Path,
    proto: Path,
    clips: int,
    layout: str,
    shards: int,
    runs: int,
    cold_runs: int,
    cache_type: str,
    consumers: int,
    per_tar: int,
) -> dict:
    """Build a project in ``work/layout``, commit it and time status and repro."""
    project = work / layout
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    warm = work / f"{layout}-site-cache"
    dvc(project, warm, "init", "-q")
    # the project's own cache even where a user-level config points at a shared one
    cache_dir = project / ".dvc" / "cache"
    (project / ".dvc" / "config").write_text(
        f"[core]\n    analytics = false\n[cache]\n    type = {cache_type}\n    dir = {cache_dir}\n"
    )
    print(f"{layout}: building {clips} clips ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    if layout == "packed":
        build_packed(proto, project / "processed", clips, per_tar)
    else:
        build_tree(proto, project / "processed", clips, layout == "sharded", shards)
    build_s = time.perf_counter() - start
    outs, deps = stage_paths(project / "processed", layout)
    (project / "raw.txt").write_text("raw data stand-in\n")
    for k in range(consumers):
        (project / f"model_{k}.pt").write_bytes(os.urandom(1024))
    (project / "dvc.yaml").write_text(dvc_yaml(outs, deps, consumers))
    print(f"{layout}: dvc commit ...", file=sys.stderr, flush=True)
    commit_s, _ = dvc(project, warm, "commit", "--force")

    row: dict = {
        "layout": layout,
        "outs": len(outs),
        "files": sum(len(files) for _, _, files in os.walk(project / "processed")),
        "consumers": consumers,
        "consumer_deps": deps,
        "cache_type": cache_type,
        "build_s": build_s,
        "commit_s": commit_s,
    }
    for command in ("status", "repro"):
        print(f"{layout}: dvc {command} ...", file=sys.stderr, flush=True)
        cold = []
        for i in range(cold_runs):
            site_cache = work / f"cold-{layout}-{command}-{i}"
            cold.append(timed_noop(project, site_cache, command))
            shutil.rmtree(site_cache)
        hot = [timed_noop(project, warm, command) for _ in range(runs)]
        row |= {
            f"{command}_s": statistics.median(hot),
            f"{command}_cold_s": statistics.median(cold) if cold else None,
            f"{command}_runs": hot,
            f"{command}_cold_runs": cold,
        }
    return row


def dvc_version() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "--version"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def markdown(rows: list[dict]) -> str:
    head = ["layout", "outs", "commit s", "status s", "status cold s", "repro s", "repro cold s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["layout"], str(r["outs"]), f"{r['commit_s']:.1f}"]
        for key in ("status_s", "status_cold_s", "repro_s", "repro_cold_s"):
            cells.append("-" if r[key] is None else f"{r[key]:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=20_000)
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument(
        "--consumers",
        type=int,
        default=4,
        help="stages depending on the tree (data/lrw/processed has 4: train_fomm, train_a2fd, "
        "finetune_a2fd, evaluate)",
    )
    parser.add_argument("--shards", type=int, default=16, help="output folders when sharded")
    parser.add_argument(
        "--clips-per-tar",
        type=int,
        default=1100,
        help="packed layout: clips per LRW-like word (LRW: ~1000 train + 50 val + 50 test)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of layouts not measured this time from the existing --json file",
    )
    parser.add_argument("--runs", type=int, default=3, help="warm runs per command (median)")
    parser.add_argument("--cold-runs", type=int, default=1, help="cold runs per command")
    parser.add_argument(
        "--source",
        default=str(ROOT / "data" / "lrw" / "processed"),
        help="processed folder to take one clip's files from (random bytes if none)",
    )
    parser.add_argument(
        "--cache-type",
        default="hardlink",
        help="DVC cache.type of the project; hardlink keeps the disk use to about one clip "
        "(copy, DVC's default here, writes the whole tree once more)",
    )
    parser.add_argument("--workdir", help="parent of the temporary project (default: system tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument(
        "--json",
        metavar="OUT",
        default=str(ROOT / "benchmarks" / "results" / "dvc_status.json"),
        help="where to write the results",
    )
    args = parser.parse_args(argv)
    if min(args.clips, args.runs, args.shards, args.clips_per_tar) < 1:
        parser.error("--clips, --runs, --shards and --clips-per-tar must be >= 1")
    if min(args.cold_runs, args.consumers) < 0:
        parser.error("--cold-runs and --consumers must be >= 0")

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dvc-status-", dir=args.workdir))
    try:
        proto, source = prototype(Path(args.source), work / "prototype")
        rows = []
        for layout in args.layouts:
            rows.append(
                measure_layout(
                    work,
                    proto,
                    args.clips,
                    layout,
                    args.shards,
                    args.runs,
                    args.cold_runs,
                    args.cache_type,
                    args.consumers,
                    args.clips_per_tar,
                )
            )
            if not args.keep:  # bound the disk use to one project at a time
                shutil.rmtree(work / layout)
        clip_bytes = sum((proto / name).stat().st_size for name in OUTPUT_FILES)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.merge and Path(args.json).is_file():
        measured = {r["layout"] for r in rows}
        kept = json.loads(Path(args.json).read_text())["layouts"]
        rows = [r for r in kept if r["layout"] not in measured] + rows
    print(markdown(rows))
    result = {
        "clips": args.clips,
        "files": args.clips * len(OUTPUT_FILES) + 1,
        "bytes": args.clips * clip_bytes,
        "source": source,
        "shards": args.shards,
        "clips_per_tar": args.clips_per_tar,
        "consumers": args.consumers,
        "runs": args.runs,
        "cold_runs": args.cold_runs,
        "cache_type": args.cache_type,
        "dvc_version": dvc_version(),
        "meta": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "layouts": rows,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
