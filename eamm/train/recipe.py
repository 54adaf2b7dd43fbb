"""Training recipes: the schedule a stage trains with, and how much of the test set is scored.

``recipe: demo`` trains with the stage sections of ``params.yaml`` as written (the demo's
CPU-minutes numbers) and caps the evaluation to a quick sample; ``recipe: eamm`` lays
``recipes.eamm`` (every number of EAMM's and FOMM vox-256's configs, reference 3.0-3.4) over them,
switches the model profile and scores every test clip. EAMM and FOMM count epochs;
:func:`in_steps` turns them into steps for the clips in the manifest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import RootModel

from eamm.config import (
    EvaluateParams,
    EvaluationCaps,
    JudgesParams,
    ModelParams,
    StageParams,
    Strict,
    read_params,
    validate_section,
)
from eamm.errors import EammError
from eamm.stages import EAMM_STAGES, STAGE_SETTINGS, STAGES_BY_NAME, TRAINING_STAGES

# Keys that give a stage's length: a recipe that sets one group replaces the other.
STEP_KEYS = ("steps", "milestones")
EPOCH_KEYS = ("num_epochs", "num_repeats", "epoch_milestones")


class RecipeParams(Strict):
    """A named training recipe (``recipe: <name>`` in params.yaml), laid over the stage sections.

    ``stages`` holds a complete schedule per stage (a length and a batch size at least); only the
    keys written replace the stage section's. ``model_profile`` replaces ``model.profile`` for
    these stages. ``evaluate`` caps the evaluation's clips and frames (the demo's quick sample;
    a recipe without it scores the whole protocol).
    """

    model_profile: str | None = None
    stages: dict[Literal[EAMM_STAGES], StageParams] = {}  # type: ignore[valid-type]  # noqa: RUF012
    evaluate: EvaluationCaps = EvaluationCaps()


class RecipesParams(RootModel[dict[str, RecipeParams]]):
    """The ``recipes`` section: recipe name -> recipe."""


@dataclasses.dataclass(frozen=True)
class ResolvedStage:
    recipe: str | None  # the recipe's name; None without a ``recipe`` key
    model: dict  # the ``model`` section, with the recipe's profile
    params: StageParams  # the stage section with the recipe laid over it
    recipe_keys: tuple[str, ...] = ()  # the keys the recipe wrote over the section's


def overlay(section: dict, recipe_stage: StageParams) -> dict:
    """``section`` with the keys written in ``recipe_stage`` replaced (whole values, so a
    recipe's ``loss_weights`` replaces the section's); a length in epochs replaces one in steps
    and vice versa, and a length replaces the section's milestones with it (they are steps of
    that length: a recipe's ``steps: 6000`` kept the demo's ``milestones: [480]``, the rate
    cut tenfold at step 480 without a word)."""
    written = recipe_stage.model_fields_set
    dropped = STEP_KEYS if written & set(EPOCH_KEYS) else ()
    dropped += EPOCH_KEYS if written & set(STEP_KEYS) else ()
    dropped += ("milestones",) if "steps" in written else ()
    dropped += ("epoch_milestones",) if "num_epochs" in written else ()
    kept = {k: v for k, v in section.items() if k not in dropped}
    return kept | recipe_stage.model_dump(include=written)


def load_recipe(data: dict, source: str | Path) -> tuple[str | None, RecipeParams]:
    """The selected recipe of a parsed params file (``recipe`` names one of ``recipes``)."""
    name = data.get("recipe")
    if name is None:
        return None, RecipeParams()
    recipes = validate_section(data.get("recipes") or {}, "recipes", RecipesParams, source).root
    if name not in recipes:
        known = ", ".join(recipes) or "none"
        raise EammError(f"{source}: recipe '{name}' is not in recipes (defined: {known})")
    return name, recipes[name]


def _read(path: Path, *sections: str) -> dict:
    data = read_params(path)
    for key in sections:
        if key not in data:
            raise EammError(f"{path}: missing section '{key}'")
    return data


def resolve_evaluate(params_path: str | Path) -> EvaluateParams:
    """The ``evaluate`` section with the selected recipe's cap laid on (the smaller wins)."""
    path = Path(params_path)
    data = _read(path, "evaluate")
    params = validate_section(data["evaluate"], "evaluate", EvaluateParams, path)
    return params.with_caps(load_recipe(data, path)[1].evaluate)


def resolve_stage(params_path: str | Path, stage: str) -> ResolvedStage:
    """The model section and stage params ``stage`` trains with under the selected recipe;
    errors name the file and the key (``recipes.<name>.stages.<stage>.<key>`` for a recipe's)."""
    path = Path(params_path)
    data = _read(path, "model", stage)
    name, recipe = load_recipe(data, path)
    model, section = data["model"], data[stage]
    judge = stage not in EAMM_STAGES  # the judges are ours: no recipe sets them
    if not judge and recipe.model_profile is not None:
        model = {**model, "profile": recipe.model_profile}
    validate_section(model, "model", ModelParams, path)
    if judge:
        validate_section(data.get("judges"), "judges", JudgesParams, path)
        return ResolvedStage(
            None, model, _checked(validate_section(section, stage, StageParams, path), stage, path)
        )
    written: tuple[str, ...] = ()
    if stage in recipe.stages:
        section = overlay(section, recipe.stages[stage])
        written = tuple(sorted(recipe.stages[stage].model_fields_set))
    params = _checked(validate_section(section, stage, StageParams, path), stage, path)
    return ResolvedStage(name, model, params, written)


def plan_line(stage: str, resolved: ResolvedStage, params: StageParams, num_clips: int) -> str:
    """What ``stage`` is about to train, said before its first step (``params``: in steps for
    its ``num_clips``): a recipe's epochs came out as steps only in the checkpoint, a stage
    section's edits under a recipe were overridden without a word, and milestones past the
    end (``num_epochs: 20`` with the recipe's ``[60, 90]``) never cut the rate."""
    given = resolved.params
    length = f"{params.steps} steps at batch {params.batch_size}"
    if given.num_epochs is not None:
        length += f" ({given.num_epochs} epochs x {given.num_repeats} repeats of {num_clips} clips)"
    line = f"{stage}: {length}, lr {params.lr:g}"
    if params.milestones:
        line += f", rate x{params.gamma:g} at steps {params.milestones}"
        late = [m for m in params.milestones if m >= params.steps]
        if late:
            line += f" ({late} at or past the last step: never reached)"
    if resolved.recipe_keys:
        line += (
            f"; recipe {resolved.recipe} sets {', '.join(resolved.recipe_keys)} over the {stage} "
            f"section (edit recipes.{resolved.recipe}.stages.{stage} to change them)"
        )
    return line


def _checked(params: StageParams, stage: str, path: Path) -> StageParams:
    """Refuse a ``loss_weights`` key the stage's loss does not read (a typo weighed nothing,
    exit 0), and a setting another stage reads (``hflip`` in stage 1's section was recorded in
    its checkpoint as if applied, and changed nothing)."""
    spec = STAGES_BY_NAME[stage]
    known = spec.loss_keys
    unknown = [k for k in params.loss_weights if k not in known]
    if unknown:
        raise EammError(
            f"{path}: {stage}.loss_weights.{unknown[0]}: not a term of {stage}'s loss "
            f"(its terms: {', '.join(known)})"
        )
    unread = sorted((params.model_fields_set & STAGE_SETTINGS) - set(spec.settings))
    if unread:
        readers = [s.name for s in TRAINING_STAGES if unread[0] in s.settings]
        raise EammError(
            f"{path}: {stage}.{unread[0]}: {stage} does not read it (read by "
            f"{', '.join(readers)}); remove it from the section"
        )
    return params


def in_steps(params: StageParams, num_clips: int) -> StageParams:
    """``params`` with a length in steps: ``num_epochs`` x (``num_repeats`` x ``num_clips``
    // ``batch_size``) steps, as EAMM's and FOMM's loaders run (one clip per sample, drop_last),
    and ``epoch_milestones`` at the same number of steps per epoch (the learning rate changes
    when epoch m starts, as MultiStepLR stepped once per epoch)."""
    if params.num_epochs is None:
        return params
    per_epoch = params.num_repeats * num_clips // params.batch_size
    if per_epoch == 0:
        raise EammError(
            f"{num_clips} training clip(s) x {params.num_repeats} repeat(s) make no full batch of "
            f"{params.batch_size}: an epoch has no step (add data or lower batch_size)"
        )
    return params.model_copy(
        update={
            "steps": params.num_epochs * per_epoch,
            "milestones": [m * per_epoch for m in params.epoch_milestones],
            "num_epochs": None,
            "num_repeats": 1,
            "epoch_milestones": [],
        }
    )
