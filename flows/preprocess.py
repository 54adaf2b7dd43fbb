"""Flow: index -> process clips in batches in parallel -> pack changed shards -> manifest.

Incremental and resumable: clips whose sources and parameters did not change are reused;
finished clips are journaled as they complete, so a killed run resumes where it stopped; only
shards whose clips changed are rewritten. One run per output folder (``eamm.preprocess.lock``).
Clips left unprocessed by run faults (disk full, I/O errors, a killed worker) after the task's
retries are left out of the manifest, and the run ends with an error naming them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.futures import as_completed
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from eamm.config import PreprocessParams, PreprocessRunParams, load_section
from eamm.datasets.base import ClipEntry
from eamm.datasets.index_io import read_index
from eamm.errors import EammError
from eamm.manifest import MANIFEST_NAME, RUN_LOG_NAME, summarize, write_manifest, write_run_log
from eamm.preprocess.dataset import (
    clear_journal,
    load_previous,
    manifest_mtime_ns,
    param_fingerprint,
    reusable,
)
from eamm.preprocess.errors import RunFaults, describe_faults
from eamm.preprocess.lock import ensure_free, folder_lock
from eamm.preprocess.packing import remove_stale_outputs, shards_to_pack
from flows.index import index_flow
from flows.runners import default_workers, make_task_runner
from tasks.preprocess import pack_shard_task, preprocess_batch


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
        TextColumn("{task.fields[rate]:.2f} clips/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


def _artifact(dataset: str, summary: dict) -> None:
    def table(title: str, counts: dict) -> str:
        rows = "\n".join(f"| {k} | {v} |" for k, v in counts.items()) or "| - | 0 |"
        return f"| {title} | clips |\n|---|---|\n{rows}\n"

    create_markdown_artifact(
        key=f"preprocess-{dataset}",
        markdown="\n".join(
            [
                table("status", summary["by_status"]),
                table("split (ok)", summary["by_split"]),
                table("speaker/emotion or word (ok)", summary["by_group"]),
                table("failure reason", summary["failure_reasons"]),
                f"processed {summary['processed']}, reused {summary['reused']}, "
                f"{summary['shards']} shards ({summary['shards_written']} written), "
                f"{summary['seconds']:.1f} s",
            ]
        ),
        description=f"{dataset} preprocessing summary",
    )


@flow(name="preprocess-dataset")
def preprocess_flow(
    dataset: str,
    out: str,
    raw: str | None = None,
    index_path: str | None = None,
    params_path: str = "params.yaml",
    summary_path: str | None = None,
    batch_size: int | None = None,
) -> dict:
    """Process every indexed clip of ``dataset`` into ``out`` and write its manifest; holds
    the folder's lock throughout."""
    with folder_lock(out) as stale:
        if stale:
            get_run_logger().warning(
                "took over the lock of a run that is gone (pid %s, started %s)",
                stale.get("pid"),
                stale.get("started"),
            )
        return _preprocess(
            dataset, Path(out), raw, index_path, params_path, summary_path, batch_size
        )


def _collect(
    futures: list, batches: list[list[ClipEntry]], faults: dict[str, str]
) -> Iterator[list[tuple[dict, bool]]]:
    """Each batch's results as it completes; a batch that still fails after its retries adds
    its clips to ``faults`` (all of them when the worker died) and yields what it finished."""
    batch_of = {f.task_run_id: batch for f, batch in zip(futures, batches, strict=True)}
    for future in as_completed(futures):
        try:
            yield future.result()
        except RunFaults as err:
            faults.update(err.faults)
            yield err.results
        except Exception as err:  # a killed worker or a crash: the batch is redone next run
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            faults.update({e.clip_id: reason for e in batch_of[future.task_run_id]})


def _packed_rows(out_root: Path, shards: list[str], futures: list) -> list[dict]:
    """The rows of every packed shard; one error line naming each shard that failed (its
    clips stay staged and journaled, so the next run packs them)."""
    rows, failed = [], []
    for shard, future in zip(shards, futures, strict=True):
        try:
            rows += future.result()
        except OSError as err:
            failed.append(f"{shard} ({err.strerror or err})")
    if failed:
        raise EammError(
            f"{out_root}: packing failed for {', '.join(failed)}; the finished clips are kept "
            "and the next run packs them"
        )
    return rows


def _preprocess(
    dataset: str,
    out_root: Path,
    raw: str | None,
    index_path: str | None,
    params_path: str,
    summary_path: str | None,
    batch_size: int | None,
) -> dict:
    """The flow's work, run under the folder's lock."""
    start = time.perf_counter()
    params = load_section(params_path, "preprocess", PreprocessParams)
    run = load_section(params_path, "preprocess_run", PreprocessRunParams)
    if index_path is None:
        index_path = str(out_root / "index.parquet")
        index_flow(dataset, index_path, raw=raw, params_path=params_path)
    index = read_index(index_path)
    raw_root = Path(raw or index.root)

    previous = load_previous(out_root)
    since_ns = manifest_mtime_ns(out_root)
    param_fp = param_fingerprint(params)
    rows: list[dict] = []
    todo = []
    for entry in index.entries:
        kept = reusable(
            previous.get(entry.clip_id),
            entry,
            raw_root,
            out_root,
            param_fp,
            run.verify_inputs,
            since_ns,
        )
        if kept is not None:
            rows.append(kept)
        else:
            todo.append(entry)
    reused = len(rows)
    size = batch_size or run.batch_size.get(dataset, 8)
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    futures = preprocess_batch.map(
        batches,
        raw_root=unmapped(str(raw_root)),
        out_root=unmapped(str(out_root)),
        params=unmapped(params),
        param_fp=unmapped(param_fp),
        previous=[
            {e.clip_id: previous[e.clip_id] for e in b if e.clip_id in previous} for b in batches
        ],
    )
    ok = sum(r["status"] == "ok" for r in rows)
    failed = len(rows) - ok
    processed = 0
    faults: dict[str, str] = {}
    with _progress() as bar:
        task = bar.add_task(
            dataset, total=len(index.entries), completed=len(rows), ok=ok, failed=failed, rate=0.0
        )
        for results in _collect(list(futures), batches, faults):
            for row, was_reused in results:
                rows.append(row)
                reused += was_reused
                processed += not was_reused
                ok += row["status"] == "ok"
                failed += row["status"] != "ok"
            elapsed = time.perf_counter() - start
            bar.update(
                task, completed=len(rows), ok=ok, failed=failed, rate=processed / max(elapsed, 1e-9)
            )

    to_pack = shards_to_pack(rows, previous)
    if to_pack:
        packed = pack_shard_task.map(
            list(to_pack), out_root=unmapped(str(out_root)), rows=list(to_pack.values())
        )
        by_id = {r["clip_id"]: r for r in _packed_rows(out_root, list(to_pack), packed)}
        rows = [by_id.get(r["clip_id"], r) for r in rows]
    remove_stale_outputs(out_root, {r["shard"] for r in rows if r["status"] == "ok"})
    write_manifest(rows, out_root / MANIFEST_NAME)
    write_run_log(rows, out_root / RUN_LOG_NAME)
    clear_journal(out_root)
    if faults:
        raise EammError(f"{out_root}: {describe_faults(faults)}")
    summary = {
        "dataset": dataset,
        "manifest": str(out_root / MANIFEST_NAME),
        **summarize(rows),
        "processed": processed,
        "reused": reused,
        "shards_written": len(to_pack),
        "seconds": round(time.perf_counter() - start, 2),
    }
    if summary_path:
        per_run = ("processed", "reused", "shards_written", "seconds")
        stable = {k: v for k, v in summary.items() if k not in per_run}
        Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_path).write_text(json.dumps(stable, indent=2) + "\n")
    _artifact(dataset, summary)
    return summary


def run_preprocess(
    dataset: str,
    out: str,
    raw: str | None = None,
    index_path: str | None = None,
    params_path: str = "params.yaml",
    summary_path: str | None = None,
    workers: int | None = None,
    runner: str | None = None,
) -> dict:
    """Pick the task runner (CLI flags win over params) and run the flow; a folder another
    run holds is refused before Prefect starts."""
    ensure_free(out)
    run = load_section(params_path, "preprocess_run", PreprocessRunParams)
    task_runner = make_task_runner(
        runner or run.runner, workers or run.workers or default_workers()
    )
    configured = preprocess_flow.with_options(name=f"preprocess-{dataset}", task_runner=task_runner)
    return configured(
        dataset,
        out,
        raw=raw,
        index_path=index_path,
        params_path=params_path,
        summary_path=summary_path,
    )
