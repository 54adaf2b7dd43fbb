"""Dataset index on disk: one Parquet file (explicit schema) plus a JSON layout report.

Both are written atomically (temporary file in the target folder, then ``os.replace``) so a
killed run never leaves a half-written index for the next stage to read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from eamm.atomic import replacing, write_text
from eamm.config import LRW_SPLITS
from eamm.datasets.base import ClipEntry, DatasetIndex, IndexProblem
from eamm.errors import EammError

INDEX_FORMAT = "eamm-dataset-index/1"
SPLITS = LRW_SPLITS  # every split name a report counts

INDEX_SCHEMA = pa.schema(
    [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("speaker", pa.string(), nullable=True),
        pa.field("emotion", pa.string(), nullable=True),
        pa.field("level", pa.int16(), nullable=True),
        pa.field("view", pa.string(), nullable=True),
        pa.field("word", pa.string(), nullable=True),
        pa.field("utterance", pa.string(), nullable=False),
        pa.field("video", pa.string(), nullable=False),
        pa.field("audio", pa.string(), nullable=True),
    ]
)
_FIELDS = INDEX_SCHEMA.names  # same names and order as ClipEntry (a test checks)


def stored_root(root: str, index_path: str | Path) -> str:
    """The raw root as an index stores it: relative to the index's folder when both lie
    inside the current folder (the project: a clone anywhere writes the same bytes, so DVC's
    hashes of the index match the committed ones); absolute otherwise."""
    here = Path.cwd().resolve()
    folder = Path(index_path).parent.resolve()
    if Path(root).is_absolute() and Path(root).is_relative_to(here) and folder.is_relative_to(here):
        return os.path.relpath(root, folder)
    return str(root)


def resolved_root(stored: str, index_path: str | Path) -> str:
    """The absolute raw root of an index's stored root (see :func:`stored_root`)."""
    if Path(stored).is_absolute():
        return stored
    return os.path.normpath(Path(index_path).parent.resolve() / stored)


def write_index(index: DatasetIndex, path: str | Path) -> None:
    """Write the entries as Parquet; dataset, root and problems go in the schema metadata."""
    columns = {name: [getattr(e, name) for e in index.entries] for name in _FIELDS}
    problems = [dataclasses.asdict(p) for p in index.problems]
    schema = INDEX_SCHEMA.with_metadata(
        {
            "format": INDEX_FORMAT,
            "dataset": index.dataset,
            "root": stored_root(index.root, path),
            "problems": json.dumps(problems, ensure_ascii=False),
        }
    )
    try:
        table = pa.Table.from_pydict(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as err:
        raise EammError(f"{path}: cannot build the index table ({err})") from None
    with replacing(path) as tmp:
        pq.write_table(table, tmp)


def read_index_table(path: str | Path) -> tuple[pa.Table, dict[str, str]]:
    """The index as Arrow (``INDEX_SCHEMA``) and its metadata (dataset, absolute root, problems
    as JSON); EammError naming the file when it is not an index :func:`write_index` wrote."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise EammError(f"{path}: not a readable dataset index ({err})") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("format") != INDEX_FORMAT or "dataset" not in meta or "root" not in meta:
        raise EammError(f"{path}: not a dataset index (missing {INDEX_FORMAT} metadata)")
    if not table.schema.remove_metadata().equals(INDEX_SCHEMA):
        raise EammError(f"{path}: dataset index columns differ from INDEX_SCHEMA")
    meta["root"] = resolved_root(meta["root"], path)
    return table.replace_schema_metadata(None), meta


def entries_of(table: pa.Table) -> list[ClipEntry]:
    """The rows of an index table as entries (built only for the clips at hand)."""
    columns = [table.column(name).to_pylist() for name in _FIELDS]
    return [ClipEntry(*row) for row in zip(*columns, strict=True)]


def read_index(path: str | Path) -> DatasetIndex:
    """Read an index written by :func:`write_index`; EammError naming the file otherwise."""
    table, meta = read_index_table(path)
    try:
        problems = [IndexProblem(p["path"], p["reason"]) for p in json.loads(meta["problems"])]
    except (KeyError, TypeError, ValueError) as err:
        raise EammError(f"{path}: bad problems metadata ({err!r})") from None
    return DatasetIndex(meta["dataset"], meta["root"], entries_of(table), problems)


def index_report(index: DatasetIndex) -> dict:
    """Summary for people: clip counts per split and every layout problem."""
    counts = Counter(e.split for e in index.entries)
    by_split = {s: counts.pop(s, 0) for s in SPLITS} | dict(sorted(counts.items()))
    return {
        "dataset": index.dataset,
        "root": index.root,
        "clips": len(index.entries),
        "by_split": by_split,
        "problems": [dataclasses.asdict(p) for p in index.problems],
    }


def write_index_report(index: DatasetIndex, path: str | Path, root: str | None = None) -> dict:
    """Write :func:`index_report` as indented JSON, atomically, and return it; ``root``
    replaces the raw folder's path (params.yaml's relative one, the same in every clone)."""
    report = index_report(index) | ({"root": root} if root is not None else {})
    write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report
