"""A run's rows in Arrow: what it finished, in flat memory (what the last run left: ``previous``).

Why: as Python dicts a manifest row costs about 4 KB (forty keys, five hashes, offset lists),
so a run holding 500k of them needs gigabytes; as Arrow columns it is under 1 KB, and a run's
store spills them to an Arrow file, so the flow's memory does not grow with the dataset (in
memory they still cost about 1.4 KB a row of RSS: 0.7 GB at 500k). Rows become dicts only for
the shard being planned or packed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eamm.manifest import ROW_SCHEMA

FLUSH_ROWS = 4096  # rows buffered as dicts before they become one record batch
PART_ROWS = 16_384  # rows per part of ``RowStore.sorted_parts`` (about 12 MB)


def _batch(rows: list[Mapping[str, Any]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{name: row.get(name) for name in ROW_SCHEMA.names} for row in rows], schema=ROW_SCHEMA
    )


def _compact(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A copy of ``batch`` in buffers of its own (not views into a larger body)."""
    return batch.take(np.arange(batch.num_rows))


class RowStore:
    """Append-only rows (``ROW_SCHEMA``), buffered and kept as Arrow record batches: in memory,
    or with ``spill_dir`` in an Arrow IPC file there (removed by ``discard``)."""

    def __init__(self, spill_dir: str | Path | None = None) -> None:
        self._batches: list[pa.RecordBatch] = []
        self._pending: list[Mapping[str, Any]] = []
        self.count = 0
        self._spill_dir = None if spill_dir is None else Path(spill_dir)
        self._path: Path | None = None
        self._sink: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._sizes: list[int] = []  # rows of each spilled batch, in file order

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._pending.append(row)
            self.count += 1
            if len(self._pending) >= FLUSH_ROWS:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = _batch(self._pending), []
        if self._spill_dir is None:
            self._batches.append(batch)
            return
        if self._writer is None:
            if self._path is not None:
                raise RuntimeError("rows added after the spilled store was read")
            self._spill_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="rows-", suffix=".arrow", dir=self._spill_dir)
            os.close(fd)
            self._path = Path(name)
            self._sink = pa.OSFile(name, "wb")
            self._writer = pa.ipc.new_file(self._sink, ROW_SCHEMA)
        self._writer.write_batch(batch)
        self._sizes.append(batch.num_rows)

    def _seal(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every row added (only ``columns`` when given), in the order added, in memory."""
        self._seal()
        if self._path is None:
            table = pa.Table.from_batches(self._batches, schema=ROW_SCHEMA)
            return table if columns is None else table.select(columns)
        names = list(columns or ROW_SCHEMA.names)
        # A batch at a time: Arrow's IPC reader copies whole batch bodies even from a memory
        # map (``read_all`` would hold the whole file at once); only the wanted columns of
        # each are copied out and kept.
        with pa.OSFile(str(self._path)) as source:
            reader = pa.ipc.open_file(source)
            pieces = [
                _compact(reader.get_batch(i).select(names))
                for i in range(reader.num_record_batches)
            ]
        return pa.Table.from_batches(pieces, pa.schema([ROW_SCHEMA.field(n) for n in names]))

    def sorted_parts(self, key: str, rows: int = PART_ROWS) -> Iterator[pa.Table]:
        """Every row sorted by ``key``, ``rows`` at a time (at least one part, maybe empty). A
        spilled store reads, for each part, the batches holding its rows one at a time and
        copies out only those rows, so the run holds the ``key`` column and one part."""
        order = pc.sort_indices(self.table([key])[key]).to_numpy().astype(np.int64)
        if self._path is None:
            table = self.table()
            for start in range(0, max(len(order), 1), rows):
                yield table.take(order[start : start + rows])
            return
        starts = np.concatenate([[0], np.cumsum(self._sizes)]).astype(np.int64)
        for begin in range(0, max(len(order), 1), rows):
            wanted = order[begin : begin + rows]
            batch_of = np.searchsorted(starts, wanted, side="right") - 1
            pieces, places = [], []
            with pa.OSFile(str(self._path)) as source:
                reader = pa.ipc.open_file(source)
                for b in np.unique(batch_of):
                    mine = np.flatnonzero(batch_of == b)
                    pieces.append(reader.get_batch(int(b)).take(wanted[mine] - starts[b]))
                    places.append(mine)
            part = pa.Table.from_batches(pieces, schema=ROW_SCHEMA)
            position = np.concatenate(places) if places else np.zeros(0, np.int64)
            yield part.take(np.argsort(position, kind="stable"))

    def discard(self) -> None:
        """Remove the spill file (the rows are gone)."""
        self._seal()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


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


def value_runs(values: pa.Array | pa.ChunkedArray) -> dict[str, tuple[int, int]]:
    """Value -> (start, end) of its run in ``values``, whose equal values are adjacent (sorted
    shard names, say), in order of appearance."""
    if not len(values):
        return {}
    changes = pc.not_equal(values.slice(1), values.slice(0, len(values) - 1))
    starts = [0, *(np.flatnonzero(changes.to_numpy(zero_copy_only=False)) + 1).tolist()]
    names = values.take(pa.array(starts, pa.int64())).to_pylist()
    return dict(zip(names, zip(starts, [*starts[1:], len(values)], strict=True), strict=True))
