"""Dataset recipes (MEAD, LRW): index a raw download folder into clip entries and problems."""

from __future__ import annotations

from typing import Any

from eamm.datasets.base import ClipEntry, DatasetIndex, DatasetRecipe, IndexProblem
from eamm.datasets.lrw import LrwRecipe
from eamm.datasets.mead import MeadRecipe, load_test_speakers
from eamm.errors import EammError

RECIPES: dict[str, type] = {"mead": MeadRecipe, "lrw": LrwRecipe}

__all__ = [
    "RECIPES",
    "ClipEntry",
    "DatasetIndex",
    "DatasetRecipe",
    "IndexProblem",
    "LrwRecipe",
    "MeadRecipe",
    "get_recipe",
    "load_test_speakers",
]


def get_recipe(name: str, **options: Any) -> DatasetRecipe:
    """The recipe called ``name`` built with ``options``; one-line EammError when unknown."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise EammError(f"unknown dataset '{name}' (known: {', '.join(sorted(RECIPES))})")
    try:
        return recipe(**options)
    except TypeError as err:
        raise EammError(f"dataset '{name}': bad options ({err})") from None
