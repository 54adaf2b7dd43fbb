"""Task: index a raw dataset folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from eamm.datasets import get_recipe
from eamm.datasets.base import DatasetIndex


@task(name="walk-raw-folder")
def index_dataset(dataset: str, raw: str, options: dict) -> DatasetIndex:
    """Walk the raw folder; layout problems are reported, not raised."""
    return get_recipe(dataset, **options).index(Path(raw))
