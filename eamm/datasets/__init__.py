"""Dataset recipes (MEAD, LRW): index a raw download folder into clip entries and problems."""

from __future__ import annotations

from typing import Any

from eamm.config import DatasetsParams
from eamm.datasets.base import ClipEntry, DatasetIndex, DatasetRecipe, IndexProblem
from eamm.datasets.lrw import LrwRecipe
from eamm.datasets.mead import MeadRecipe, load_test_speakers
from eamm.errors import EammError

RECIPES: dict[str, type[DatasetRecipe]] = {"mead": MeadRecipe, "lrw": LrwRecipe}

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
    "recipe_from_params",
]


def _recipe_class(name: str) -> type[DatasetRecipe]:
    """The recipe class called ``name``; one-line EammError when unknown."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise EammError(f"unknown dataset '{name}' (known: {', '.join(sorted(RECIPES))})")
    return recipe


def recipe_from_params(name: str, params: DatasetsParams) -> tuple[str, DatasetRecipe]:
    """(raw folder, recipe) of dataset ``name`` as its ``datasets.<name>`` section sets them."""
    recipe = _recipe_class(name)
    section = getattr(params, name)
    return section.raw, recipe.from_params(section)


def get_recipe(name: str, **options: Any) -> DatasetRecipe:
    """The recipe called ``name`` built with ``options``; one-line EammError when unknown."""
    recipe = _recipe_class(name)
    try:
        return recipe(**options)
    except TypeError as err:
        raise EammError(f"dataset '{name}': bad options ({err})") from None
