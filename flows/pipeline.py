"""Flows for Prefect deployments (prefect.yaml): one dataset, both datasets, the whole pipeline.

Thin wrappers over the flows the DVC stages run, with the same folder layout as ``dvc.yaml``, so a
deployment run and ``dvc repro`` read and write the same files. Each step is a subflow, so its
runs, task retries and artifacts appear under the deployment's flow run.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from eamm.stages import STAGES_BY_NAME, index_path, processed_dir
from flows.evaluate import evaluate_flow
from flows.index import index_flow
from flows.preprocess import checked_run
from flows.train import train_flow

DATASETS = ("mead", "lrw")


@flow(name="eamm-preprocess")
def preprocess_dataset_flow(
    dataset: str,
    params_path: str = "params.yaml",
    data_root: str = "data",
    raw: str | None = None,
    workers: int | None = None,
    runner: str | None = None,
) -> dict:
    """Index then preprocess ``dataset`` into ``<data_root>/<dataset>/`` (incremental).

    The task runner is ``$EAMM_TASK_RUNNER`` where set, else ``runner`` (a string: a deployment
    cannot pass a runner object), else params.yaml's ``preprocess_run`` (see ``flows.runners``).
    """
    folder = Path(data_root) / dataset
    index = index_path(data_root, dataset)
    run = checked_run(dataset, str(processed_dir(data_root, dataset)), params_path, workers, runner)
    index_flow(dataset, str(index), raw=raw, params_path=params_path)
    return run(
        raw=raw,
        index_path=str(index),
        params_path=params_path,
        summary_path=str(folder / "preprocess_summary.json"),
    )


@flow(name="eamm-reprocess")
def reprocess_flow(
    datasets: list[str] | None = None,
    params_path: str = "params.yaml",
    data_root: str = "data",
    workers: int | None = None,
    runner: str | None = None,
) -> dict[str, dict]:
    """Index and preprocess each dataset (default: both); unchanged clips are reused, so a run
    without new raw data costs an index walk per dataset (the scheduled deployment relies on it)."""
    return {
        dataset: preprocess_dataset_flow(
            dataset, params_path, data_root, workers=workers, runner=runner
        )
        for dataset in datasets or DATASETS
    }


@flow(name="eamm-pipeline")
def pipeline_flow(
    params_path: str = "params.yaml",
    data_root: str = "data",
    models_root: str = "models",
    reports: str = "reports",
    workers: int | None = None,
    runner: str | None = None,
) -> dict:
    """index -> preprocess (MEAD, LRW) -> the four EAMM training stages and the two evaluation
    judges -> evaluate, in order (the order of ``dvc repro``)."""
    results: dict = {
        "preprocess": reprocess_flow(None, params_path, data_root, workers=workers, runner=runner)
    }
    for stage in STAGES_BY_NAME:
        results[stage] = train_flow(
            stage, params_path=params_path, data_root=data_root, models_root=models_root
        )
    results["evaluate"] = evaluate_flow(
        params_path=params_path, data_root=data_root, checkpoints=models_root, out_dir=reports
    )
    return results
