"""Tasks for dataset preprocessing: a batch of clips per task (per-task overhead stays small)."""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from eamm.config import PreprocessParams
from eamm.datasets.base import ClipEntry
from eamm.face.landmarks import FaceModels, LandmarkBackend, make_backend
from eamm.preprocess.dataset import Journal, process_entry
from eamm.preprocess.errors import RunFaults, run_fault
from eamm.preprocess.packing import pack_shard

_local = threading.local()


def worker_models(params: PreprocessParams) -> tuple[FaceModels, LandmarkBackend]:
    """Models loaded once per worker thread (or process) and reused for every clip."""
    key = (params.landmarks.model_dump_json(),)
    if getattr(_local, "key", None) != key:
        if getattr(_local, "models", None) is not None:
            _local.models.close()
        _local.models = FaceModels.from_params(params.landmarks)
        _local.backend = make_backend(params.landmarks.backend, params.landmarks.fan_weights_dir)
        _local.key = key
    return _local.models, _local.backend


def _transient(task, task_run, state) -> bool:
    """Retry only what may pass on a second try (I/O hiccups, memory), never a bad clip."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, (RunFaults, OSError, MemoryError, TimeoutError))


@task(
    name="preprocess-batch",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_transient,
)
def preprocess_batch(
    entries: list[ClipEntry],
    raw_root: str,
    out_root: str,
    params: PreprocessParams,
    param_fp: str,
    previous: dict[str, dict],
) -> list[tuple[dict, bool]]:
    """Process (or reuse) each clip; every finished clip is journaled before the next starts.

    A run fault (disk full, I/O error, memory) skips to the next clip and, at the end, raises
    RunFaults, which the retry rule retries; it carries the finished clips' results.
    """
    logger = get_run_logger()
    models, backend = worker_models(params)
    journal = Journal(Path(out_root))
    results = []
    faults: dict[str, str] = {}
    for entry in entries:
        try:
            row, reused = process_entry(
                entry,
                Path(raw_root),
                Path(out_root),
                params,
                param_fp,
                previous.get(entry.clip_id),
                models,
                backend,
            )
            if not reused:
                journal.append(row)
        except Exception as err:
            reason = run_fault(err)
            if reason is None:
                raise
            logger.warning("%s not processed (run fault): %s", entry.clip_id, err)
            faults[entry.clip_id] = reason
            continue
        if row["status"] == "failed":
            logger.warning("%s failed: %s", entry.clip_id, row["error_message"])
        results.append((row, reused))
    if faults:
        raise RunFaults(faults, results)
    return results


@task(
    name="pack-shard",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=_transient,
)
def pack_shard_task(shard: str, out_root: str, rows: list[dict]) -> list[dict]:
    """Rewrite one shard from its staged and kept clips; returns the rows pointing into it."""
    packed = pack_shard(Path(out_root), shard, rows)
    get_run_logger().info("%s: %d clips", shard, len(packed))
    return packed
