"""The training stages are declared once (``eamm.stages``) and everything else agrees with
the declaration: dvc.yaml's commands, deps and outputs, params.yaml's sections, the factories."""

from __future__ import annotations

import pytest
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
