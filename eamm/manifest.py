"""Dataset manifests: one Parquet row per indexed clip (failed ones included), explicit schema.

An ok row says where its five output files live: a tar shard beside the manifest, each file's
byte offset and size in it (``eamm.shards``) and a content hash of its bytes. Written atomically
(temporary file, then rename). ``validate_manifest`` checks a manifest against the schema and
the shards on disk: an ok row whose members are missing, inconsistent or damaged, a failed row
with outputs or whose failure came from the run (disk full, I/O error) rather than the clip,
shards no row accounts for and leftovers of an interrupted run are all errors.

The manifest holds content only, so the same clips give the same bytes on any machine and a
run that redoes nothing leaves it (and every stage downstream of it) unchanged. What a run
measured (each clip's processing seconds and its sources' mtime, the fast reuse key) goes to the
run log beside it (``run_log.parquet``), which DVC ignores (``.dvcignore``).

Manifests of version 2 (no ``member_hashes``) are still read, the column null: their content
cannot be verified until a preprocessing run records the hashes (``eamm.preprocess.dataset``);
those of version 3 carried the run log's columns, which are dropped on reading.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eamm.atomic import replacing
from eamm.config import LRW_SPLITS, VIDEO_FPS
from eamm.errors import EammError
from eamm.shards import SHARDS_DIR, Member, npy_shape, unmatched
from eamm.stages import DATASETS, MANIFEST_NAME  # noqa: F401  (re-exported: the pipeline declares it)

OUTPUT_FILES = ("frames.mp4", "audio.wav", "mfcc.npy", "landmarks.npy", "pose.npy")
STATUSES = ("ok", "failed", "skipped")

MANIFEST_VERSION = "4"
RUN_LOG_NAME = "run_log.parquet"
# where clips are built before they are packed; a finished run leaves it empty
STAGING_DIR = ".staging"


def column(arrow: pa.DataType, *, nullable: bool = True, run_log: bool = False) -> Any:
    """A ``ManifestRow`` field of Arrow type ``arrow``: a nullable one defaults to None (list
    columns too, never a shared list: hence their ``noqa: RUF009``), one that is not has no
    default. ``run_log``: a measurement of the run, not a manifest column."""
    metadata = {"arrow": arrow, "nullable": nullable, "run_log": run_log}
    return field(default=None, metadata=metadata) if nullable else field(metadata=metadata)


@dataclass(slots=True, kw_only=True)
class ManifestRow:
    """One clip's record: the manifest's columns, in order and with their Arrow types
    (``MANIFEST_SCHEMA`` is derived from them), then what the run measured of the clip, which
    goes to the run log (``RUN_LOG_SCHEMA``) instead.

    New rows are built as this; rows travel (journal, tasks, ``read_rows``) as plain dicts with
    the same keys (``to_dict``). ``write_manifest`` and ``write_run_log`` take either.
    """

    clip_id: str = column(pa.string(), nullable=False)
    dataset: str = column(pa.string(), nullable=False)
    split: str = column(pa.string(), nullable=False)
    speaker: str | None = column(pa.string())
    emotion: str | None = column(pa.string())
    level: int | None = column(pa.int16())
    view: str | None = column(pa.string())
    word: str | None = column(pa.string())
    utterance: str = column(pa.string(), nullable=False)
    # sources, relative to the raw root
    video_path: str = column(pa.string(), nullable=False)
    audio_path: str | None = column(pa.string())
    source_bytes: int | None = column(pa.int64())
    source_fingerprint: str | None = column(pa.string())
    # input facts
    fps_in: float | None = column(pa.float64())
    n_frames_in: int | None = column(pa.int32())
    width: int | None = column(pa.int32())
    height: int | None = column(pa.int32())
    duration_s: float | None = column(pa.float64())
    # outputs
    n_frames: int | None = column(pa.int32())
    n_mfcc_windows: int | None = column(pa.int32())
    audio_source: str | None = column(pa.string())
    # audio duration minus video duration before trimming/padding (seconds)
    audio_video_offset_s: float | None = column(pa.float64())
    mfcc_end_pad: int | None = column(pa.int32())
    faces_detected: int | None = column(pa.int16())
    frames_with_face: int | None = column(pa.int32())
    transform: list[float] | None = column(pa.list_(pa.float64()))  # noqa: RUF009
    landmark_backend: str | None = column(pa.string())
    # outcome
    status: str = column(pa.string(), nullable=False)
    error_code: str | None = column(pa.string())
    error_message: str | None = column(pa.string())
    # the tar shard (relative to the manifest) and each output file's byte range in it
    shard: str | None = column(pa.string())
    output_files: list[str] | None = column(pa.list_(pa.string()))  # noqa: RUF009
    member_offsets: list[int] | None = column(pa.list_(pa.int64()))  # noqa: RUF009
    member_sizes: list[int] | None = column(pa.list_(pa.int64()))  # noqa: RUF009
    # BLAKE2b (16 bytes, hex) of each member's bytes, as written (eamm.shards.new_digest)
    member_hashes: list[str] | None = column(pa.list_(pa.string()))  # noqa: RUF009
    param_fingerprint: str | None = column(pa.string())
    code_version: str | None = column(pa.string())
    # measured by the run, not content: the run log's columns (beside clip_id)
    source_mtime_ns: int | None = column(pa.int64(), run_log=True)
    processing_seconds: float | None = column(pa.float64(), run_log=True)

    def to_dict(self) -> dict[str, Any]:
        """The row as the pipeline passes it around (journal lines, task results)."""
        return asdict(self)


def _arrow_fields(run_log: bool) -> list[pa.Field]:
    return [
        pa.field(f.name, f.metadata["arrow"], nullable=f.metadata["nullable"])
        for f in fields(ManifestRow)
        if f.metadata["run_log"] is run_log
    ]


MANIFEST_SCHEMA = pa.schema(
    _arrow_fields(run_log=False), metadata={"eamm.manifest.version": MANIFEST_VERSION}
)
FIELDS = tuple(MANIFEST_SCHEMA.names)
# what one run measured, per clip: not content, so not in the manifest
RUN_LOG_SCHEMA = pa.schema([MANIFEST_SCHEMA.field("clip_id"), *_arrow_fields(run_log=True)])
TIMING_COLUMNS = tuple(RUN_LOG_SCHEMA.names[1:])
# a whole row as a run holds it: the manifest's columns, then the run log's
ROW_SCHEMA = pa.schema([*_arrow_fields(run_log=False), *_arrow_fields(run_log=True)])
# columns added since version 2: a manifest without them is read with them null
ADDED_COLUMNS = ("member_hashes",)
# a row as write_manifest takes it
Row = ManifestRow | Mapping[str, Any]

# errno values that say the run failed, not the clip: the same clip passes on a healthy disk
RUN_FAULT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.ENOMEM,
        errno.EROFS,
        errno.ESTALE,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.EMFILE,
        errno.ENFILE,
    }
)
# Python's words where a memory or process limit stops it starting a thread (a RuntimeError)
NO_THREAD = "can't start new thread"
RUN_FAULT_TEXTS = (
    *(os.strerror(code) for code in sorted(RUN_FAULT_ERRNOS)),
    "MemoryError",
    NO_THREAD,
)


def run_fault_reason(message: str | None) -> str | None:
    """The run fault an error message names (``No space left on device``...), else None.

    Messages are all there is for tools that report errors as text (an ffmpeg subprocess) and
    for failed rows of older manifests, written before run faults were kept out of them.
    """
    return next((text for text in RUN_FAULT_TEXTS if text in (message or "")), None)


def _cells(rows: Iterable[Row], names: Sequence[str]) -> list[dict[str, Any]]:
    """``names`` of each row (missing keys of a dict are null), sorted by clip_id."""
    cells = [
        {name: getattr(row, name) for name in names}
        if isinstance(row, ManifestRow)
        else {name: row.get(name) for name in names}
        for row in rows
    ]
    return sorted(cells, key=lambda r: r["clip_id"])


def _select(rows: Iterable[Row] | pa.Table, schema: pa.Schema) -> pa.Table:
    """``schema``'s columns of ``rows`` sorted by clip_id, as one chunk (the same bytes
    whether the rows came as records or as a table of ``ROW_SCHEMA``)."""
    if isinstance(rows, pa.Table):
        # only the schema's columns are sorted (a copy of those, not of every column)
        return _as_schema(rows.select(schema.names).sort_by("clip_id"), schema)
    return pa.Table.from_pylist(_cells(rows, schema.names), schema=schema)


def _as_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``schema``'s columns of ``table`` in one chunk, typed and labelled as ``schema``."""
    return pa.Table.from_arrays(table.select(schema.names).combine_chunks().columns, schema=schema)


def to_table(rows: Iterable[Row] | pa.Table) -> pa.Table:
    """Rows (``ManifestRow``, dicts with its keys, or a ``ROW_SCHEMA`` table) as a manifest
    table sorted by clip_id; the run log's columns are left out."""
    return _select(rows, MANIFEST_SCHEMA)


def write_manifest(rows: Iterable[Row] | pa.Table, path: str | Path) -> Path:
    """Write atomically: readers see the old manifest or the new one, never half of one."""
    return _write_atomic(to_table(rows), Path(path))


def write_run_log(rows: Iterable[Row] | pa.Table, path: str | Path) -> Path:
    """The run's measurements of ``rows`` (``RUN_LOG_SCHEMA``), written as the manifest is."""
    return _write_atomic(_select(rows, RUN_LOG_SCHEMA), Path(path))


def read_by_row_group(
    path: str | Path | pq.ParquetFile, columns: Sequence[str] | None = None
) -> pa.Table:
    """A Parquet file's table (a path, or a file already open) read a row group at a time:
    about half the transient memory of ``pq.read_table`` (+77 against +143 MiB for three
    columns of a 500k-row manifest)."""
    source = path if isinstance(path, pq.ParquetFile) else pq.ParquetFile(path, pre_buffer=False)
    groups = [
        source.read_row_group(i, columns=columns, use_threads=False)
        for i in range(source.num_row_groups)
    ]
    return pa.concat_tables(groups) if groups else source.schema_arrow.empty_table()


def read_run_log_table(path: str | Path) -> pa.Table | None:
    """The run log (``RUN_LOG_SCHEMA``), or None when it is missing or unreadable (it only
    speeds up reuse: without it, sources are judged by their content)."""
    try:
        table = read_by_row_group(path)
    except (OSError, pa.ArrowInvalid):
        return None
    if not set(RUN_LOG_SCHEMA.names) <= set(table.schema.names):
        return None
    return table.select(RUN_LOG_SCHEMA.names)


def read_run_log(path: str | Path) -> dict[str, dict]:
    """clip_id -> the run log's columns; empty when the log is missing or unreadable."""
    table = read_run_log_table(path)
    return {} if table is None else {r.pop("clip_id"): r for r in table.to_pylist()}


def joined_rows(manifest: pa.Table, log: pa.Table | None, picks: pa.Array | None) -> pa.Table:
    """Whole rows (``ROW_SCHEMA``): the manifest's columns and, per row, the run log's row at
    ``picks`` (null picks, or no log: null timings)."""
    if log is None or picks is None:
        measured = [pa.nulls(len(manifest), RUN_LOG_SCHEMA.field(n).type) for n in TIMING_COLUMNS]
    else:
        measured = [log[n].take(picks) for n in TIMING_COLUMNS]
    return pa.Table.from_arrays([*manifest.select(FIELDS).columns, *measured], schema=ROW_SCHEMA)


def _write_atomic(table: pa.Table, path: Path) -> Path:
    with replacing(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_manifest_parts(parts: Iterable[pa.Table], manifest: Path, run_log: Path) -> None:
    """The manifest and the run log of ``ROW_SCHEMA`` tables already sorted by clip_id, written
    part by part (one row group each), so a run never holds all its rows as one table; each
    file is replaced atomically (the manifest first), as ``write_manifest`` does. One part
    gives the same bytes as ``write_manifest``/``write_run_log`` of the same rows."""
    with (  # closed in reverse: the writers, then the manifest replaced, then the run log
        replacing(Path(run_log)) as log_tmp,
        replacing(Path(manifest)) as manifest_tmp,
        pq.ParquetWriter(manifest_tmp, MANIFEST_SCHEMA) as manifest_writer,
        pq.ParquetWriter(log_tmp, RUN_LOG_SCHEMA) as log_writer,
    ):
        for part in parts:
            for writer, schema in (
                (manifest_writer, MANIFEST_SCHEMA),
                (log_writer, RUN_LOG_SCHEMA),
            ):
                writer.write_table(_as_schema(part, schema))


def read_manifest(path: str | Path) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise EammError(f"{path}: no manifest there (file does not exist)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise EammError(f"{path}: not a readable Parquet manifest ({err})") from None
    return conform_manifest(table, path)


def _schema_difference(schema: pa.Schema) -> str:
    """Which columns differ from ``MANIFEST_SCHEMA``, for the one-line error: the version
    numbers alone say nothing when a tool added or retyped a column."""
    expected = {f.name: f.type for f in MANIFEST_SCHEMA}
    found = {f.name: f.type for f in schema}
    parts = [f"extra column {n!r}" for n in found if n not in expected]
    parts += [f"column {n!r} missing" for n in expected if n not in found]
    parts += [
        f"column {n!r} is {found[n]}, not {t}"
        for n, t in expected.items()
        if n in found and found[n] != t
    ]
    nullable = {f.name: f.nullable for f in schema}
    parts += [
        f"column {f.name!r} may hold nulls, where the schema requires a value"
        if nullable[f.name]
        else f"column {f.name!r} requires a value, where the schema allows nulls"
        for f in MANIFEST_SCHEMA
        if f.name in found and found[f.name] == f.type and nullable[f.name] != f.nullable
    ]
    if not parts and list(found) != list(expected):
        parts.append("columns in another order")
    if not parts:
        parts.append("the fields differ in detail (nested types or field metadata)")
    return ", ".join(parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")


def conform_manifest(table: pa.Table, path: str | Path) -> pa.Table:
    """A table (or a row group) read from manifest ``path`` in the current schema: columns
    an older version lacked added as nulls, version 3's run log columns dropped; EammError
    when it is no manifest of a version this code reads."""
    legacy = [name for name in TIMING_COLUMNS if name in table.schema.names]
    table = table.drop_columns(legacy)  # version 3 kept the run log's columns here
    missing = [name for name in ADDED_COLUMNS if name not in table.schema.names]
    for name in missing:
        field = MANIFEST_SCHEMA.field(name)
        table = table.append_column(field, pa.nulls(len(table), field.type))
    if (missing or legacy) and set(table.schema.names) == set(FIELDS):
        table = table.select(list(FIELDS))
    if not table.schema.equals(MANIFEST_SCHEMA, check_metadata=False):
        metadata = table.schema.metadata or {}
        if metadata.get(b"format", b"").startswith(b"eamm-dataset-index/"):
            raise EammError(
                f"{path}: a dataset index (eamm index), not a manifest: pass the "
                "manifest.parquet that eamm preprocess wrote"
            )
        found = metadata.get(b"eamm.manifest.version", b"?").decode()
        raise EammError(
            f"{path}: schema differs from the manifest schema (version {MANIFEST_VERSION}, "
            f"file has version {found}: {_schema_difference(table.schema)}); re-run "
            "preprocessing to rewrite it"
        )
    return table


def read_rows(path: str | Path) -> list[dict]:
    return read_manifest(path).to_pylist()


def require_dataset(path: str | Path, dataset: str) -> None:
    """Refuse a manifest of another dataset where ``dataset``'s belongs (copied or linked in
    its place): MEAD's stages trained on LRW rows without a word (every label "neutral", the
    emotion judge at accuracy 1.0) and the report filed them under LRW."""
    others = sorted({d for d in read_manifest(path).column("dataset").to_pylist() if d != dataset})
    if others:
        raise EammError(
            f"{path}: rows of dataset {', '.join(map(repr, others))} in the {dataset} manifest: "
            f"preprocess {dataset} into its own folder (eamm preprocess {dataset})"
        )


def content_fingerprint(path: str | Path) -> str:
    """Hash of the rows: what training learns from, whatever the file's Parquet encoding
    (a version-3 manifest with its timing columns hashes as its version-4 rewrite)."""
    table = read_manifest(path)
    digest = hashlib.blake2b(digest_size=16)
    for row in table.to_pylist():
        digest.update(json.dumps(row, sort_keys=True).encode())
    return digest.hexdigest()


_COUNTED = ("dataset", "split", "speaker", "emotion", "word", "status", "error_code", "shard")
SUMMARY_COLUMNS = ("clip_id", *_COUNTED, "n_frames")  # what ``summarize`` reads of a table


NO_VALUE = "(none)"


def _counts(array: pa.Array) -> dict[str, int]:
    """Count per value, sorted; a null (a failed row without a code) counts as "(none)"."""
    counts = pc.value_counts(array).to_pylist()
    return dict(
        sorted((NO_VALUE if v["values"] is None else v["values"], v["counts"]) for v in counts)
    )


def summarize(rows: Iterable[Row] | pa.Table) -> dict:
    """Counts by status and split, ok clips by speaker/emotion (MEAD) or word (LRW), failures;
    counted in Arrow, so a run's rows never become Python objects."""
    if not isinstance(rows, pa.Table):
        schema = pa.schema([ROW_SCHEMA.field(n) for n in SUMMARY_COLUMNS])
        rows = pa.Table.from_pylist(_cells(rows, SUMMARY_COLUMNS), schema=schema)
    ok = rows.filter(pc.equal(rows["status"], "ok"))
    group = pc.if_else(
        pc.equal(ok["dataset"], "lrw"),
        ok["word"],
        pc.binary_join_element_wise(ok["speaker"], ok["emotion"], "/"),
    )
    failed = rows.filter(pc.not_equal(rows["status"], "ok"))
    failed = failed.filter(pc.equal(failed["status"], "failed"))
    frames = int(pc.sum(ok["n_frames"]).as_py() or 0)
    return {
        "clips": rows.num_rows,
        "by_status": _counts(rows["status"]),
        "by_split": _counts(ok["split"]),
        "by_group": _counts(group),
        "failure_reasons": _counts(failed["error_code"]),
        "shards": pc.count_distinct(ok["shard"]).as_py(),
        "frames": frames,
        "hours": round(frames / VIDEO_FPS / 3600, 4),
    }


def byte_ranges(row: dict) -> dict[str, tuple[int, int]]:
    """Output file name -> (data offset, size) in the row's shard."""
    return dict(
        zip(
            row["output_files"],
            zip(row["member_offsets"], row["member_sizes"], strict=True),
            strict=True,
        )
    )


def members(row: dict, root: Path) -> dict[str, Member]:
    """Output file name -> its byte range in the row's shard (``root``: the manifest's folder)."""
    shard = root / row["shard"]
    return {name: Member(shard, offset, size) for name, (offset, size) in byte_ranges(row).items()}


def npy_shapes(n_frames: int) -> dict[str, tuple[int, ...]]:
    """The shape each ``.npy`` output has for a clip of ``n_frames`` frames."""
    return {
        "mfcc.npy": (n_frames, 28, 13),
        "landmarks.npy": (n_frames, 68, 2),
        "pose.npy": (n_frames, 7),
    }


def listed_twice(rows: Iterable[dict]) -> list[str]:
    """One line per clip id the rows list more than once (it would be read twice)."""
    counts = Counter(r["clip_id"] for r in rows)
    return [f"{clip}: listed more than once" for clip in sorted(counts) if counts[clip] > 1]


MEMBER_LISTS = ("output_files", "member_offsets", "member_sizes", "member_hashes")


def recorded_members_problem(row: dict) -> str:
    """What is wrong with how an ok row records its shard members ("" when sound): member
    lists of unequal lengths, or a shard outside ``shards/`` beside the manifest (an absolute
    path or ``..`` would read another folder's clips)."""
    lengths = {k: len(row.get(k) or []) for k in MEMBER_LISTS if k in row}
    if any(n != len(OUTPUT_FILES) for k, n in lengths.items() if k != "member_hashes" or n):
        listed = ", ".join(f"{k} {n}" for k, n in lengths.items())
        return f"member lists of other lengths than its {len(OUTPUT_FILES)} outputs ({listed})"
    shard = PurePosixPath(row["shard"])
    if shard.is_absolute() or ".." in shard.parts or shard.parts[0] != SHARDS_DIR:
        return f"shard {row['shard']} is not under {SHARDS_DIR}/ beside the manifest"
    return ""


def check_members(row: dict, root: Path, content: bool = True) -> list[str]:
    """Problems with an ok row's outputs, one line per damaged member (empty when sound).

    Always: tar headers at the recorded offsets and ``.npy`` headers with the row's shapes.
    With ``content``: every member's bytes against its recorded hash (a full read of the
    clip's outputs; rows without hashes are checked as far as the headers allow).
    """
    clip_id = row["clip_id"]
    if not row.get("shard") or sorted(row.get("output_files") or []) != sorted(OUTPUT_FILES):
        return [f"{clip_id}: outputs incomplete (no shard members recorded)"]
    if problem := recorded_members_problem(row):
        return [f"{clip_id}: {problem}"]
    if not (root / row["shard"]).is_file():
        return [f"{clip_id}: shard {row['shard']} is missing"]
    bad = unmatched(root / row["shard"], byte_ranges(row), clip_id)
    if bad:
        return [f"{clip_id}: {', '.join(bad)} not at the recorded offset in {row['shard']}"]
    found = members(row, root)
    damaged = set()
    if content and row.get("member_hashes"):
        recorded = dict(zip(row["output_files"], row["member_hashes"], strict=True))
        damaged = {name for name, member in found.items() if member.digest() != recorded[name]}
    problems = [
        f"{clip_id}: {name} damaged (its bytes differ from the recorded hash) in {row['shard']}"
        for name in OUTPUT_FILES
        if name in damaged
    ]
    for name, shape in npy_shapes(row["n_frames"]).items():
        if name in damaged:
            continue
        try:
            found_shape = npy_shape(found[name])
        except (ValueError, TypeError, OSError) as err:
            problems.append(
                f"{clip_id}: {name} has a damaged .npy header in {row['shard']} ({err})"
            )
            continue
        if found_shape != shape:
            problems.append(f"{clip_id}: {name} has shape {found_shape}, expected {shape}")
    return problems


def validate_manifest(path: str | Path, content: bool = True) -> list[str]:
    """Problems found (empty when valid); shards are looked up beside the manifest.

    ``content``: hash every member (reads all outputs, about 2 s per GB per core); without it
    only tar and ``.npy`` headers are checked, which finds misplaced but not damaged bytes.
    """
    path = Path(path)
    rows = read_rows(path)
    root = path.parent
    problems: list[str] = []
    problems += listed_twice(rows)
    datasets = Counter(r["dataset"] for r in rows)
    if len(datasets) > 1:  # one dataset per manifest: the report files a clip under its row's
        counts = ", ".join(f"{n} {d!r}" for d, n in sorted(datasets.items(), key=str))
        problems.append(f"rows of more than one dataset ({counts})")
    used: set[str] = set()
    for row in rows:
        if row["status"] not in STATUSES:
            problems.append(f"{row['clip_id']}: unknown status {row['status']!r}")
            continue
        if row["dataset"] not in DATASETS:
            problems.append(f"{row['clip_id']}: unknown dataset {row['dataset']!r}")
        if row["split"] not in LRW_SPLITS:  # a clip of another split is in none of them
            problems.append(f"{row['clip_id']}: unknown split {row['split']!r}")
        if row["status"] == "ok":
            used.add(row["shard"])
            problems += check_members(row, root, content)
        elif row.get("shard") or (root / STAGING_DIR / row["clip_id"]).exists():
            problems.append(f"{row['clip_id']}: status {row['status']} but outputs exist")
        if row["status"] == "failed" and not row["error_code"]:
            problems.append(f"{row['clip_id']}: failed without an error_code")
        if row["status"] == "failed" and (reason := run_fault_reason(row["error_message"])):
            problems.append(
                f"{row['clip_id']}: failed because of the run, not the clip ({reason}); "
                "a preprocessing re-run redoes it"
            )
    unhashed = sum(r["status"] == "ok" and not r.get("member_hashes") for r in rows)
    if content and unhashed:
        problems.append(
            f"{unhashed} ok clips have no member hashes (manifest version 2): content not "
            "verified; a preprocessing re-run records them"
        )
    shards = root / SHARDS_DIR
    if shards.is_dir():
        for shard in sorted(shards.rglob("*.tar")):
            rel = shard.relative_to(root).as_posix()
            if rel not in used:
                problems.append(f"{rel}: shard that no ok row accounts for")
        for leftover in sorted(shards.rglob(".*.partial")):
            problems.append(f"{leftover.relative_to(root)}: partial shard left behind")
    staging = root / STAGING_DIR
    if staging.is_dir() and any(staging.iterdir()):
        problems.append(f"{STAGING_DIR}: clips of an unfinished run are still unpacked")
    return problems
