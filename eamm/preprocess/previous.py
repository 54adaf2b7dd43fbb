"""What the last run left, looked up by clip_id without holding the manifest in memory.

Why: a re-run needs each clip's previous record once, shard by shard. Read whole, a 500k-clip
manifest costs about 0.9 GB of RSS (its Arrow table, the run log joined to it and a Python
dict of its ids); here only the ids are held, as one sorted fixed-width byte array, with the
ok clips' shards, the run log's small columns and the journal lines written after the manifest.
Records are read from the manifest a row group at a time when a shard asks for them; the plan
walks shards in the manifest's own order (both follow the clip_id), so each row group is
decoded about once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eamm.errors import EammError
from eamm.manifest import (
    MANIFEST_NAME,
    ROW_SCHEMA,
    RUN_LOG_NAME,
    conform_manifest,
    joined_rows,
    read_by_row_group,
    read_run_log_table,
)
from eamm.preprocess.dataset import JOURNAL_DIR
from eamm.preprocess.rows import RowStore, last_per_clip, value_runs

ID_CHUNK = 65_536  # ids turned into bytes at a time (Python objects, transient)


def _fixed(ids: pa.Array | pa.ChunkedArray, width: int) -> np.ndarray:
    """The ids as one numpy array of ``width``-byte strings (NUL-padded, compared as bytes:
    the order of the UTF-8 text), built a chunk at a time."""
    raw = pc.cast(ids, pa.binary())
    parts = [
        np.array(raw.slice(i, ID_CHUNK).to_pylist(), dtype=f"S{width}")
        for i in range(0, len(raw), ID_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=f"S{width}")


class IdLookup:
    """Positions of clip ids in an id column, by binary search of its sorted bytes (about 30
    bytes a clip instead of ~150 for a dict of Python strings). Where an id occurs more than
    once, the last occurrence wins."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray) -> None:
        lengths = pc.binary_length(pc.cast(ids, pa.binary()))
        self.width = max(int(pc.max(lengths).as_py() or 0), 1)
        keys = _fixed(ids, self.width)
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def find(self, ids: list[str]) -> np.ndarray:
        """Position of each id, -1 where it has none."""
        encoded = [cid.encode() for cid in ids]
        fits = np.array([len(e) <= self.width for e in encoded], dtype=bool)
        query = np.array(
            [e if ok else b"" for e, ok in zip(encoded, fits, strict=True)], dtype=f"S{self.width}"
        )
        at = np.searchsorted(self._keys, query, side="right") - 1
        hit = fits & (at >= 0)
        hit[hit] = self._keys[at[hit]] == query[hit]
        where = np.full(len(ids), -1, dtype=np.int64)
        where[hit] = self._order[at[hit]]
        return where


def _packed_ok(table: pa.Table, latest: pa.Array | pa.ChunkedArray | bool = True) -> np.ndarray:
    """Positions of ``table``'s rows that are ``latest``, ok and packed in a shard."""
    packed = pc.and_(pc.equal(table["status"], "ok"), pc.is_valid(table["shard"]))
    return np.flatnonzero(pc.and_(packed, latest).to_numpy(zero_copy_only=False)).astype(np.int64)


class PreviousRows:
    """The latest record per clip: the last manifest's rows (with their run log columns)
    except those a journal line supersedes, then the journal's rows; and, per shard, the
    clips whose latest record is ok and packed there (to decide which shards to repack)."""

    def __init__(
        self,
        manifest: Path | None = None,
        log: pa.Table | None = None,
        journal: pa.Table | None = None,
    ) -> None:
        self._manifest = manifest
        self._journal = journal if journal is not None else ROW_SCHEMA.empty_table()
        keep = ["clip_id", "shard", "status"]
        # the manifest is replaced only by ``finish``, after the last lookup
        self._file = None if manifest is None else pq.ParquetFile(manifest, pre_buffer=False)
        if self._file is None:
            self._starts = np.zeros(1, dtype=np.int64)
            listed = ROW_SCHEMA.empty_table().select(keep)
        else:
            meta = self._file.metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            listed = read_by_row_group(self._file, keep)
        superseded = pc.is_in(listed["clip_id"], value_set=self._journal["clip_id"])
        self._rows = len(listed)
        self._count = self._rows - int(pc.sum(superseded).as_py() or 0) + len(self._journal)
        self._log_ids = None if log is None else IdLookup(log["clip_id"])
        self._log = None if log is None else log.drop_columns(["clip_id"])
        # positions 0..rows-1 are the manifest's rows, then the journal's
        self._all_ids = pa.chunked_array(
            [*listed["clip_id"].chunks, *self._journal["clip_id"].chunks], pa.string()
        )
        self._ids = IdLookup(self._all_ids)
        held = [
            _packed_ok(listed, pc.invert(superseded)),
            _packed_ok(self._journal),
        ]
        positions = np.concatenate([held[0], held[1] + self._rows])
        shards = pa.concat_arrays(
            [
                t["shard"].take(p).combine_chunks()
                for t, p in zip((listed, self._journal), held, strict=True)
            ]
        )
        order = pc.sort_indices(shards).to_numpy()
        self._held_at = positions[order]  # held clips' positions, grouped by shard
        self._held = value_runs(shards.take(order))
        # every shard any record names, held or not: the shards this pipeline wrote here
        self.recorded_shards = {
            name
            for table in (listed, self._journal)
            for name in pc.unique(table["shard"].drop_null()).to_pylist()
        }
        self._group: tuple[int, pa.Table] | None = None  # the row group read last

    def __len__(self) -> int:
        return self._count

    def __contains__(self, clip_id: str) -> bool:
        return bool(self._ids.find([clip_id])[0] >= 0)

    def _row_group(self, index: int) -> pa.Table:
        """Row group ``index`` of the manifest as whole rows (its run log columns joined)."""
        if self._group is None or self._group[0] != index:
            table = conform_manifest(
                self._file.read_row_group(index, use_threads=False), self._manifest
            )
            picks = None
            if self._log_ids is not None:
                at = self._log_ids.find(table["clip_id"].to_pylist())
                picks = pa.array(at, mask=at < 0, type=pa.int64())
            self._group = (index, joined_rows(table, self._log, picks))
        return self._group[1]

    def rows(self, clip_ids: Iterable[str]) -> dict[str, dict]:
        """clip_id -> its latest record as a dict, for the ids that have one."""
        ids = list(clip_ids)
        where = self._ids.find(ids)
        found: dict[str, dict] = {}
        in_journal = where >= self._rows
        if in_journal.any():
            picked = [cid for cid, j in zip(ids, in_journal, strict=True) if j]
            records = self._journal.take(where[in_journal] - self._rows).to_pylist()
            found.update(zip(picked, records, strict=True))
        in_manifest = (where >= 0) & ~in_journal
        group = np.searchsorted(self._starts, where, side="right") - 1
        for g in np.unique(group[in_manifest]):
            mine = np.flatnonzero(in_manifest & (group == g))
            records = self._row_group(int(g)).take(where[mine] - self._starts[g]).to_pylist()
            found.update(zip([ids[i] for i in mine], records, strict=True))
        return {cid: found[cid] for cid in ids if cid in found}

    def get(self, clip_id: str) -> dict | None:
        return self.rows([clip_id]).get(clip_id)

    def held(self, shard: str) -> set[str]:
        """The clips whose latest record is ok and packed in ``shard``."""
        span = self._held.get(shard)
        if span is None:
            return set()
        return set(self._all_ids.take(self._held_at[span[0] : span[1]]).to_pylist())


def _journal_rows(folder: Path) -> pa.Table | None:
    """Every journal line, oldest file first, the last line of each clip winning."""
    if not folder.is_dir():
        return None
    store = RowStore()
    for path in sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime_ns):
        with path.open() as handle:
            for line in handle:
                try:
                    store.add([json.loads(line)])
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
    return last_per_clip(store.table()) if store.count else None


def _readable_manifest(path: Path) -> Path | None:
    """``path`` if it is a manifest of a version this code reads (checked on its schema, no
    rows read), else None: its clips are processed again."""
    if not path.is_file():
        return None
    try:
        schema = pq.read_schema(path)
        conform_manifest(schema.empty_table(), path)
    except (OSError, pa.ArrowInvalid, EammError):
        return None
    return path


def load_previous(out_root: Path) -> PreviousRows:
    """Latest record per clip: the last manifest with its run log, then journal lines written
    after it. A manifest of another version (an older layout) is ignored: its clips are
    processed again."""
    out_root = Path(out_root)
    manifest = _readable_manifest(out_root / MANIFEST_NAME)
    log = read_run_log_table(out_root / RUN_LOG_NAME) if manifest is not None else None
    return PreviousRows(manifest, log, _journal_rows(out_root / JOURNAL_DIR))
