"""Tasks for dataset preprocessing: a batch of clips per task (per-task overhead stays small)."""

from __future__ import annotations

import threading
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from eamm.config import PreprocessParams
from eamm.datasets.base import ClipEntry
from eamm.face.landmarks import FaceModels, LandmarkBackend, make_backend
from eamm.preprocess.batch import process_batch
from eamm.preprocess.errors import RunFaults
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
    """``eamm.preprocess.batch.process_batch`` with this worker's face models; its RunFaults
    (disk full, I/O error, memory) are retried."""
    models, backend = worker_models(params)
    return process_batch(
        entries,
        Path(raw_root),
        Path(out_root),
        params,
        param_fp,
        previous,
        models,
        backend,
        get_run_logger(),
    )


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
