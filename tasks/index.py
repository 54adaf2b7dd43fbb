"""Task: index a raw dataset folder."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from eamm.datasets.base import DatasetIndex, DatasetRecipe


@task(name="walk-raw-folder")
def index_dataset(recipe: DatasetRecipe, raw: str) -> DatasetIndex:
    """Walk the raw folder; layout problems are reported, not raised."""
    return recipe.index(Path(raw))
