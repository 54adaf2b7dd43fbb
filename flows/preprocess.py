"""Flow: index -> process clips in batches in parallel -> pack each changed shard -> manifest.

The plan (what is reused, the batches, which shards to repack) is ``eamm.preprocess.plan``;
this flow runs its batches and packs as Prefect tasks, a bounded number in flight, so its
memory stays flat in the number of clips. Incremental and resumable: clips whose sources and
parameters did not change are reused; finished clips are journaled as they complete, so a
killed run resumes where it stopped; only shards whose clips changed are rewritten, each as
soon as its clips are done. One run per output folder (``eamm.folder_lock``).
Clips left unprocessed by run faults (disk full, I/O errors, a killed worker) after the task's
retries are left out of the manifest, and the run ends with an error naming them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
from functools import partial
from pathlib import Path

from prefect import flow, get_run_logger
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

from eamm.atomic import write_text
from eamm.config import PreprocessParams, PreprocessRunParams, load_section
from eamm.errors import EammError
from eamm.folder_lock import ensure_free, folder_lock
from eamm.preprocess.batch import request_stop
from eamm.preprocess.errors import RunFaults
from eamm.preprocess.plan import Batch, PackJob, PreprocessRun
from flows.index import index_flow
from flows.runners import default_workers, make_task_runner
from tasks.preprocess import pack_shard_task, preprocess_batch

# Clips per task for a dataset that preprocess_run.batch_size leaves out (its keys are checked:
# a misspelt one is refused at load, PreprocessRunParams)
DEFAULT_BATCH_SIZE = 8


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
                f"processed {summary['processed']}, reused {summary['reused']}"
                f"{redone_note(summary)}, "
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
    in_flight: int = 4,
) -> dict:
    """Process every indexed clip of ``dataset`` into ``out`` and write its manifest, with at
    most ``in_flight`` task runs pending; holds the folder's lock throughout."""
    with folder_lock(out) as stale:
        if stale:
            get_run_logger().warning(
                "took over the lock of a run that is gone (pid %s, started %s)",
                stale.get("pid"),
                stale.get("started"),
            )
        return _preprocess(
            dataset, Path(out), raw, index_path, params_path, summary_path, batch_size, in_flight
        )


def redone_note(summary: dict) -> str:
    """Why clips were processed again, where it was other params: the count said nothing."""
    count = summary.get("redone_other_params", 0)
    if not count:
        return ""
    return f"; {count} of them redone: their outputs were made with other preprocess params"


# Task runs in flight per worker: enough to keep every worker busy, few enough that the flow's
# memory does not grow with the dataset (finished futures are dropped).
IN_FLIGHT_PER_WORKER = 2


def _drain(run: PreprocessRun, window: dict, limit: int, submit, on_result) -> None:
    """Take results back until at most ``limit`` task runs are in flight; a batch that still
    fails after its retries adds its clips to the run's faults (all of them when the worker
    died), a shard whose packing fails stays staged for the next run."""
    while len(window) > limit:
        future = next(as_completed(list(window)))
        item = window.pop(future)
        if isinstance(item, PackJob):
            try:
                run.packed(item, future.result())
            except OSError as err:
                run.pack_failed(item, err)
        else:
            try:
                run.done(item, future.result())
            except RunFaults as err:
                run.done(item, err.results, err.faults)
            except Exception as err:  # a killed worker or a crash: the batch is redone next run
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                run.done(item, [], {e.clip_id: reason for e in item.entries})
        for job in run.ready_packs():
            submit(job)
        on_result()


def _preprocess(
    dataset: str,
    out_root: Path,
    raw: str | None,
    index_path: str | None,
    params_path: str,
    summary_path: str | None,
    batch_size: int | None,
    in_flight: int,
) -> dict:
    """The flow's work, run under the folder's lock: the plan's batches and packs as tasks,
    at most ``in_flight`` at a time."""
    params = load_section(params_path, "preprocess", PreprocessParams)
    run_params = load_section(params_path, "preprocess_run", PreprocessRunParams)
    if index_path is None:
        index_path = str(out_root / "index.parquet")
        index_flow(dataset, index_path, raw=raw, params_path=params_path)
    run = PreprocessRun(
        out_root,
        index_path,
        params,
        batch_size or run_params.batch_size.get(dataset, DEFAULT_BATCH_SIZE),
        raw=raw,
        verify_inputs=run_params.verify_inputs,
        dataset=dataset,
    )
    window: dict = {}
    common = {"raw_root": str(run.raw_root), "out_root": str(out_root)}

    def submit(item: Batch | PackJob) -> None:
        if isinstance(item, PackJob):
            future = pack_shard_task.submit(item.shard, out_root=str(out_root), rows=item.rows)
            window[future] = item
        else:
            future = preprocess_batch.submit(
                item.entries, params=params, param_fp=run.param_fp, previous=item.previous, **common
            )
            window[future] = item

    try:
        _run_plan(run, dataset, in_flight, window, submit)
    except BaseException:  # cancelled, stopped, failed: no clip is written once the lock goes
        _settle(window, out_root)
        raise
    summary = run.finish()
    if summary_path:
        per_run = ("processed", "reused", "redone_other_params", "shards_written", "seconds")
        stable = {k: v for k, v in summary.items() if k not in per_run}
        write_text(summary_path, json.dumps(stable, indent=2) + "\n")
    _artifact(dataset, summary)
    return summary


def _settle(window: dict, out_root: Path) -> None:
    """Stop the run's batches after their current clip and wait for every task run in flight
    (a pack in flight finishes): the folder lock is released after it, not before. The stop
    reaches every runner's batches (``request_stop``'s marker in the folder); a Dask future is
    not cancelled: cancelling a running one left it writing, unwaited."""
    request_stop(out_root)
    try:
        for future in window:  # not started yet: never starts (a running one goes on)
            if isinstance(future.wrapped_future, concurrent.futures.Future):
                future.wrapped_future.cancel()
        for future in window:
            with contextlib.suppress(Exception):  # its failure is the run's, already leaving
                future.wait()
    finally:
        request_stop(out_root, stop=False)


def _run_plan(run: PreprocessRun, dataset: str, in_flight: int, window: dict, submit) -> None:
    """Submit the plan's batches and packs, at most ``in_flight`` at a time, with a progress
    bar, until every result is back."""
    with _progress() as bar:
        task = bar.add_task(dataset, total=run.total, completed=0, ok=0, failed=0, rate=0.0)

        def show() -> None:
            elapsed = time.perf_counter() - run.start
            bar.update(
                task,
                completed=run.finished,
                ok=run.ok,
                failed=run.finished - run.ok,
                rate=run.processed / max(elapsed, 1e-9),
            )

        for batch in run.work():
            submit(batch)
            for job in run.ready_packs():
                submit(job)
            _drain(run, window, in_flight - 1, submit, show)
        for job in run.ready_packs():
            submit(job)
        _drain(run, window, 0, submit, show)
        show()


def run_preprocess(
    dataset: str,
    out: str,
    raw: str | None = None,
    index_path: str | None = None,
    params_path: str = "params.yaml",
    summary_path: str | None = None,
    workers: int | None = None,
    runner: str | None = None,
    runner_option: str = "runner",
) -> dict:
    """Pick the task runner (CLI flags win over params) and run the flow; a folder another
    run holds is refused before Prefect starts. ``runner_option`` names where ``runner``
    came from (the CLI's ``--runner``, a deployment's parameter) in errors."""
    configured = checked_run(dataset, out, params_path, workers, runner, runner_option)
    return configured(
        raw=raw, index_path=index_path, params_path=params_path, summary_path=summary_path
    )


def checked_run(
    dataset: str,
    out: str,
    params_path: str,
    workers: int | None,
    runner: str | None,
    runner_option: str = "runner",
) -> partial:
    """The preprocessing flow of ``dataset`` into ``out`` with its task runner, after the
    checks that need no work done: the workers, the runner, a folder another run holds (a
    deployment run refused for them had rewritten the dataset's index first)."""
    if workers is not None and workers < 1:  # a deployment's parameter (the CLI checks its own)
        raise EammError(f"workers {workers}: give 1 or more (or none: one per CPU core)")
    ensure_free(out)
    run = load_section(params_path, "preprocess_run", PreprocessRunParams)
    workers = workers or run.workers or default_workers()
    named = runner_option if runner else f"preprocess_run.runner in {params_path}"
    task_runner = make_task_runner(runner or run.runner, workers, named)
    configured = preprocess_flow.with_options(name=f"preprocess-{dataset}", task_runner=task_runner)
    return partial(configured, dataset, out, in_flight=max(2, IN_FLIGHT_PER_WORKER * workers))
