"""A run's rows in Arrow: what it finished and what the last run left, in flat memory.

Why: as Python dicts a manifest row costs about 4 KB (forty keys, five hashes, offset lists),
so a run holding 500k of them needs gigabytes; as Arrow columns it is a few hundred bytes.
Rows become dicts only for the shard being planned or packed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from eamm.manifest import ROW_SCHEMA

FLUSH_ROWS = 4096  # rows buffered as dicts before they become one record batch


def _batch(rows: list[Mapping[str, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{name: row.get(name) for name in ROW_SCHEMA.names} for row in rows], schema=ROW_SCHEMA
    )


class RowStore:
    """Append-only rows (``ROW_SCHEMA``), buffered and kept as Arrow record batches."""

    def __init__(self) -> None:
        self._batches: list[pa.RecordBatch] = []
        self._pending: list[Mapping[str, Any]] = []
        self.count = 0

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._pending.append(row)
            self.count += 1
            if len(self._pending) >= FLUSH_ROWS:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._batches.append(_batch(self._pending))
            self._pending = []

    def table(self) -> pa.Table:
        """Every row added, in the order added."""
        self._flush()
        return pa.Table.from_batches(self._batches, schema=ROW_SCHEMA)


def last_per_clip(table: pa.Table) -> pa.Table:
    """The last row of each clip_id (journal lines of a clip redone later supersede)."""
    ids = table["clip_id"].to_pylist()
    seen: set[str] = set()
    keep = []
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] not in seen:
            seen.add(ids[i])
            keep.append(i)
    return table.take(sorted(keep))


class PreviousRows:
    """The latest record per clip (``ROW_SCHEMA`` table, one row per clip), looked up by
    clip_id; the ok clips each shard holds, for deciding which shards to repack."""

    def __init__(self, table: pa.Table | None = None) -> None:
        self._table = table if table is not None else ROW_SCHEMA.empty_table()
        self._position = {cid: i for i, cid in enumerate(self._table["clip_id"].to_pylist())}
        held: dict[str, list[int]] = {}
        columns = (self._table["shard"].to_pylist(), self._table["status"].to_pylist())
        for i, (shard, status) in enumerate(zip(*columns, strict=True)):
            if status == "ok" and shard:
                held.setdefault(shard, []).append(i)
        self._held = {shard: np.array(p, dtype=np.int64) for shard, p in held.items()}

    def __len__(self) -> int:
        return len(self._position)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._position

    def rows(self, clip_ids: Iterable[str]) -> dict[str, dict]:
        """clip_id -> its record as a dict, for the ids that have one."""
        found = {cid: self._position[cid] for cid in clip_ids if cid in self._position}
        if not found:
            return {}
        records = self._table.take(list(found.values())).to_pylist()
        return dict(zip(found, records, strict=True))

    def get(self, clip_id: str) -> dict | None:
        return self.rows([clip_id]).get(clip_id)

    def held(self, shard: str) -> set[str]:
        """The clips whose latest record is ok and packed in ``shard``."""
        positions = self._held.get(shard)
        if positions is None:
            return set()
        return set(self._table["clip_id"].take(positions).to_pylist())
