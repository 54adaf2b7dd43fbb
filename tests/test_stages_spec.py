"""The training stages are declared once (``eamm.stages``) and everything else agrees with
the declaration: dvc.yaml's commands, deps and outputs, params.yaml's sections, the factories."""

from __future__ import annotations

import pytest
import torch
import yaml

from eamm.stages import EAMM_STAGES, JUDGES, STAGE_DIRS, TRAINING_STAGES, training_stage
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("spec", TRAINING_STAGES, ids=lambda s: s.name)
def test_dvc_stage_matches_the_declaration(spec):
    stage = DVC[spec.name]
    assert stage["cmd"] == f"eamm train {spec.name}"
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    assert f"models/{spec.folder}/checkpoint.pt" in outs
    deps = set(stage["deps"])
    for upstream in spec.upstream:
        assert f"models/{STAGE_DIRS[upstream]}/checkpoint.pt" in deps, upstream
    # a stage only starts from stages declared before it (the DAG's order)
    names = [s.name for s in TRAINING_STAGES]
    assert all(names.index(u) < names.index(spec.name) for u in spec.upstream)


@pytest.mark.parametrize("spec", TRAINING_STAGES, ids=lambda s: s.name)
def test_each_stage_has_params_and_a_factory(spec):
    assert spec.name in PARAMS
    module, function = spec.factory.split(":")
    factory = getattr(__import__(module, fromlist=[function]), function)
    assert callable(factory)


def test_names_are_derived_once():
    assert EAMM_STAGES == ("train_fomm", "train_a2fd", "finetune_a2fd", "train_emotion")
    assert JUDGES == ("train_emotion_classifier", "train_sync_expert")
    assert len(set(STAGE_DIRS.values())) == len(STAGE_DIRS)
    with pytest.raises(KeyError, match="unknown stage 'train_nothing'"):
        training_stage("train_nothing")


@pytest.mark.parametrize("spec", TRAINING_STAGES, ids=lambda s: s.name)
def test_every_stage_builds_for_timing_without_data_or_checkpoints(spec):
    """The benchmarks build stages through the declared factories: random upstream weights,
    synthetic clips, the stage's own dataset makes the batch its loss takes."""
    from benchmarks.train_step import stage_batch, synthetic_clips
    from eamm.config import StageParams, TrainerParams
    from eamm.train.build import build_for_timing

    params = StageParams.model_validate(PARAMS[spec.name])
    params = params.model_copy(update={"batch_size": 2, "clip_len": 4})
    model = {**PARAMS["model"], "profile": "tiny"}
    stage = build_for_timing(
        spec.name, model, params, TrainerParams(), synthetic_clips(4), PARAMS["judges"]
    )
    assert set(stage.param_groups) <= set(stage.trainable)
    losses, _ = stage.loss_fn(stage_batch(stage, 2, 0, torch.device("cpu")), 0)
    assert all(torch.isfinite(v) for v in losses.values())


def _declared(stage: dict) -> list[str]:
    entries = stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", [])
    return sorted(next(iter(e)) if isinstance(e, dict) else e for e in entries)


def test_every_dvc_stage_is_declared_once():
    from eamm.stages import PIPELINE

    assert [s.name for s in PIPELINE] == list(DVC), "dvc.yaml's stages, in order"


@pytest.mark.parametrize("name", list(DVC))
def test_dvc_stage_runs_writes_and_reads_what_the_spec_declares(name):
    """Command, params sections and outputs of each dvc.yaml stage equal its declaration in
    ``eamm.stages.PIPELINE``, the one place code reads them from."""
    from eamm.stages import PIPELINE_BY_NAME

    spec, stage = PIPELINE_BY_NAME[name], DVC[name]
    assert stage["cmd"].split(" --")[0].strip() == f"eamm {spec.command}"
    assert tuple(stage.get("params", [])) == spec.params
    assert _declared(stage) == sorted(spec.outputs)
    for section in spec.params:
        assert section.split(".")[0] in PARAMS, section


def test_data_paths_come_from_the_spec():
    from eamm.stages import checkpoint_path, index_path, manifest_path, processed_dir

    assert manifest_path("data", "lrw").as_posix() == "data/lrw/processed/manifest.parquet"
    assert processed_dir("d", "mead").as_posix() == "d/mead/processed"
    assert index_path("data", "mead").as_posix() == "data/mead/index.parquet"
    assert checkpoint_path("models", "finetune_a2fd").as_posix() == (
        "models/a2fd_finetune/checkpoint.pt"
    )


def test_outputs_kept_out_of_the_dvc_cache_are_in_git():
    """An output with ``cache: false`` is restored by nothing but git: a checkout of another
    commit, or back after a `dvc exp`, must bring it along (the training plots were ignored by
    git, so `dvc status` stayed 'modified' for them after any other run)."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    uncached_options = {
        path: options
        for stage in DVC.values()
        for key in ("outs", "metrics", "plots")
        for entry in stage.get(key, [])
        if isinstance(entry, dict)
        for path, options in entry.items()
        if isinstance(options, dict) and options.get("cache") is False
    }
    uncached = list(uncached_options)
    assert len(uncached) > 10
    kept = [path for path, options in uncached_options.items() if options.get("persist")]
    # persist: a stage that fails before writing (a params typo) left them deleted by DVC,
    # and nothing but git brought them back
    assert kept == uncached
    for path in uncached:
        tracked = subprocess.run(
            ["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        assert tracked.strip(), f"{path}: cache: false, yet not in git"
