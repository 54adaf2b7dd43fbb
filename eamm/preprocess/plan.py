"""One preprocessing run's plan and bookkeeping, without Prefect.

Clips are planned shard by shard (``eamm.shards.shard_of``): a shard's reusable clips are kept,
the others go out in batches, and once every clip of a shard is back the shard is packed (when
its clip set or content changed) while later shards are still being processed. Only the rows of
open shards are Python dicts; finished rows go to an Arrow file in the journal folder
(``RowStore``), the manifest is written from it in sorted parts, and the index stays a table, so
a run's memory does not grow with the dataset. ``flows.preprocess`` runs the batches
and packs as Prefect tasks, a bounded number at a time; ``run_serially`` runs them here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from eamm.config import PreprocessParams
from eamm.datasets.base import ClipEntry
from eamm.datasets.index_io import entries_of, read_index_table
from eamm.errors import EammError
from eamm.face.landmarks import FaceModels, LandmarkBackend
from eamm.manifest import (
    MANIFEST_NAME,
    RUN_LOG_NAME,
    SUMMARY_COLUMNS,
    summarize,
    write_manifest_parts,
)
from eamm.preprocess.batch import process_batch, request_stop
from eamm.preprocess.dataset import (
    JOURNAL_DIR,
    clear_journal,
    manifest_mtime_ns,
    param_fingerprint,
    reusable,
)
from eamm.preprocess.errors import RunFaults, describe_faults
from eamm.preprocess.packing import needs_packing, pack_shard, remove_stale_outputs
from eamm.preprocess.previous import load_previous
from eamm.preprocess.rows import RowStore, value_runs
from eamm.shards import shard_of


@dataclass
class Batch:
    """Clips to process (consecutive in shard order), with their previous records (reused by
    content when only their sources' mtime changed)."""

    entries: list[ClipEntry]
    previous: dict[str, dict]


@dataclass
class PackJob:
    shard: str
    rows: list[dict]


@dataclass
class _OpenShard:
    waiting: int
    rows: list[dict] = field(default_factory=list)


SHARD_CHUNK = 65_536  # clip_ids turned into shard names at a time (Python strings, transient)


def shard_groups(index: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """(shard, its index rows by clip_id) for every shard of the index, in shard order.

    Only a sort order and the shard boundaries are held, not a sorted copy of the index or a
    Python string per clip (together about 90 MB at 500k LRW clips); each group is taken from
    the index when its turn comes."""
    ids = index["clip_id"]
    if not len(ids):
        return
    shards = pa.chunked_array(
        [
            pa.array([shard_of(c) for c in ids.slice(i, SHARD_CHUNK).to_pylist()], pa.string())
            for i in range(0, len(ids), SHARD_CHUNK)
        ],
        pa.string(),
    )
    order = pc.sort_indices(
        pa.table({"shard": shards, "clip_id": ids}),
        sort_keys=[("shard", "ascending"), ("clip_id", "ascending")],
    )
    runs = value_runs(shards.take(order))
    del shards
    rows = order.to_numpy()
    for name, (begin, end) in runs.items():
        yield name, index.take(rows[begin:end])


def check_index(
    index_path: str | Path, clips: int, meta: dict, raw_root: Path, dataset: str | None
) -> None:
    """Refuse, before anything in the output folder changes, an index that would make the run
    replace a processed dataset with the wrong thing: another dataset's, one with no clip (an
    empty or wrong raw folder: every shard would go), or one whose raw folder is not there (a
    moved or unmounted disk: every clip would be recorded failed)."""
    if dataset is not None and meta["dataset"] != dataset:
        raise EammError(f"{index_path}: an index of {meta['dataset']}, not {dataset}")
    if clips == 0:
        raise EammError(
            f"{index_path}: no clip indexed under {meta['root']} (layout problems, if any, in "
            "the index report): nothing to preprocess, and the processed clips are left as they are"
        )
    if not raw_root.is_dir():
        raise EammError(
            f"{raw_root}: the raw folder of {index_path} does not exist (moved or unmounted?); "
            "pass --raw where it is now"
        )


class PreprocessRun:
    """What one run keeps, reuses, processes and packs in ``out_root``; ``work`` plans lazily,
    ``done``/``packed`` take results back, ``finish`` writes the manifest and run log."""

    def __init__(
        self,
        out_root: str | Path,
        index_path: str | Path,
        params: PreprocessParams,
        batch_size: int,
        raw: str | None = None,
        verify_inputs: str = "mtime",
        dataset: str | None = None,
    ) -> None:
        self.start = time.perf_counter()
        self.out_root = Path(out_root)
        request_stop(self.out_root, stop=False)  # a killed run's marker must not stop this one
        self.index, meta = read_index_table(index_path)
        self.dataset = meta["dataset"]
        self.raw_root = Path(raw or meta["root"])
        check_index(index_path, self.index.num_rows, meta, self.raw_root, dataset)
        self.params = params
        self.param_fp = param_fingerprint(params)
        self.batch_size = batch_size
        self.verify_inputs = verify_inputs
        self.previous = load_previous(self.out_root)
        self.since_ns = manifest_mtime_ns(self.out_root)
        self.rows = RowStore(spill_dir=self.out_root / JOURNAL_DIR)  # flat memory in N
        self.faults: dict[str, str] = {}
        self.pack_failures: list[str] = []
        self.finished = self.ok = self.processed = self.reused = self.shards_written = 0
        self.other_params = 0  # clips redone because their record has other params
        self._open: dict[str, _OpenShard] = {}
        self._ready: list[PackJob] = []

    @property
    def total(self) -> int:
        return self.index.num_rows

    def _count(self, rows: list[dict]) -> None:
        self.finished += len(rows)
        self.ok += sum(r["status"] == "ok" for r in rows)

    def work(self) -> Iterator[Batch]:
        """The batches to process, planned one shard at a time (reuse is decided as the
        plan advances, so it overlaps the processing of earlier shards); a batch may span
        the end of one shard and the start of the next."""
        pending: list[ClipEntry] = []
        known: dict[str, dict] = {}
        for shard, group in shard_groups(self.index):
            entries = entries_of(group)
            previous = self.previous.rows(e.clip_id for e in entries)
            kept, todo = [], []
            for entry in entries:
                row = reusable(
                    previous.get(entry.clip_id),
                    entry,
                    self.raw_root,
                    self.out_root,
                    self.param_fp,
                    self.verify_inputs,
                    self.since_ns,
                )
                if row is None:
                    todo.append(entry)
                else:
                    kept.append(row)
            self.reused += len(kept)
            self._count(kept)
            self._open[shard] = _OpenShard(len(todo), kept)
            if not todo:
                self._close(shard)
            pending += todo
            self.other_params += sum(
                previous[e.clip_id].get("param_fingerprint") != self.param_fp
                for e in todo
                if e.clip_id in previous
            )
            known.update((e.clip_id, previous[e.clip_id]) for e in todo if e.clip_id in previous)
            while len(pending) >= self.batch_size:
                part, pending = pending[: self.batch_size], pending[self.batch_size :]
                yield Batch(
                    part, {e.clip_id: known.pop(e.clip_id) for e in part if e.clip_id in known}
                )
        if pending:
            yield Batch(pending, known)

    def done(
        self, batch: Batch, results: list[tuple[dict, bool]], faults: dict[str, str] | None = None
    ) -> None:
        """Take a batch's results back; clips in ``faults`` (left unprocessed by the run) get
        no row, and the run ends with an error naming them."""
        rows = [row for row, _ in results]
        self.reused += sum(reused for _, reused in results)
        self.processed += sum(not reused for _, reused in results)
        self._count(rows)
        self.faults.update(faults or {})
        for row in rows:
            self._open[shard_of(row["clip_id"])].rows.append(row)
        for shard, back in Counter(shard_of(e.clip_id) for e in batch.entries).items():
            self._open[shard].waiting -= back
            if self._open[shard].waiting == 0:
                self._close(shard)

    def _close(self, shard: str) -> None:
        """Every clip of ``shard`` is back: pack it if it changed, else its rows are final."""
        rows = self._open.pop(shard).rows
        ok = [r for r in rows if r["status"] == "ok"]
        self.rows.add(r for r in rows if r["status"] != "ok")
        if ok and needs_packing(shard, ok, self.previous.held(shard)):
            self._ready.append(PackJob(shard, ok))
        else:
            self.rows.add(ok)

    def ready_packs(self) -> list[PackJob]:
        """Shards whose clips are all back and that must be rewritten (each returned once)."""
        ready, self._ready = self._ready, []
        return ready

    def packed(self, job: PackJob, rows: list[dict]) -> None:
        self.rows.add(rows)
        self.shards_written += 1

    def pack_failed(self, job: PackJob, err: OSError) -> None:
        """The shard stays unpacked: its clips stay staged and journaled for the next run."""
        self.pack_failures.append(f"{job.shard} ({err.strerror or err})")

    def finish(self) -> dict:
        """Write the manifest and run log (every batch and pack must be back) and return the
        run's summary; EammError when a shard could not be packed (nothing written) or clips
        were left unprocessed by run faults (written without them)."""
        if self._open or self._ready:
            raise RuntimeError(f"finish() with shards still open: {sorted(self._open)[:5]}")
        if self.pack_failures:
            raise EammError(
                f"{self.out_root}: packing failed for {', '.join(self.pack_failures)}; the "
                "finished clips are kept and the next run packs them"
            )
        counted = self.rows.table(SUMMARY_COLUMNS)
        summary = summarize(counted)
        held = set(
            pc.unique(counted["shard"].filter(pc.equal(counted["status"], "ok"))).to_pylist()
        )
        del counted  # counted: not held while the manifest is written (~45 MB at 500k clips)
        remove_stale_outputs(self.out_root, held, self.previous.recorded_shards)
        write_manifest_parts(
            self.rows.sorted_parts("clip_id"),
            self.out_root / MANIFEST_NAME,
            self.out_root / RUN_LOG_NAME,
        )
        self.rows.discard()
        clear_journal(self.out_root)
        if self.faults:
            raise EammError(f"{self.out_root}: {describe_faults(self.faults)}")
        return {
            "dataset": self.dataset,
            "manifest": str(self.out_root / MANIFEST_NAME),
            **summary,
            "processed": self.processed,
            "reused": self.reused,
            "redone_other_params": self.other_params,
            "shards_written": self.shards_written,
            "seconds": round(time.perf_counter() - self.start, 2),
        }


def run_serially(run: PreprocessRun, models: FaceModels, backend: LandmarkBackend) -> dict:
    """Run every batch and pack in this process, in plan order (tests, one-off use)."""

    def pack_ready() -> None:
        for job in run.ready_packs():
            run.packed(job, pack_shard(run.out_root, job.shard, job.rows))

    for batch in run.work():
        args = (run.raw_root, run.out_root, run.params, run.param_fp, batch.previous)
        try:
            run.done(batch, process_batch(batch.entries, *args, models, backend))
        except RunFaults as err:
            run.done(batch, err.results, err.faults)
        pack_ready()
    pack_ready()
    return run.finish()
