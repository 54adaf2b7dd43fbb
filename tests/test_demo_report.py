"""The committed demo report proves each stage learned: every relation against its baseline
holds in ``reports/metrics.json``, and that file is the one the committed ``dvc.lock``
recorded for the `evaluate` stage (the numbers come from a real `make demo` run)."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from eamm.evidence import relations
from tests.conftest import ROOT

METRICS = ROOT / "reports" / "metrics.json"


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads(METRICS.read_text())


def test_metrics_file_is_the_one_dvc_lock_recorded():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    outs = lock["stages"]["evaluate"]["outs"]
    recorded = next(o for o in outs if o["path"] == "reports/metrics.json")
    assert hashlib.md5(METRICS.read_bytes()).hexdigest() == recorded["md5"]


# Relations the committed demo run does not reach yet, with why (issue #13's note). Strict:
# when a demo run makes one hold, the test fails until it is taken off this list.
_EMOTIONAL_MOUTH = (
    "the MEAD test clips' mouths carry their emotion (the sample's contempt and disgust open a "
    "dark cavity, happy widens the lips), which the neutral variant, made from a neutral source "
    "and the speech alone, is not meant to show; and stage 1, trained on LRW alone as EAMM's, "
    "moves the MEAD keypoints only a little better than no motion (15.8 vs 16.3 px). The "
    "renderer is not the limit: the reconstruction from the real keypoints scores 8.7 against "
    "the static source's 17.9, and on LRW the neutral variant holds (8.7 vs 11.3)"
)
_NO_EXPRESSION = (
    "the 64-px FOMM renders the sample's expressions only faintly: even its reconstruction with "
    "the real frames' keypoints is named right in 0.15 of the clips by the blur-robust judge "
    "(0.85 on the real clips, 0 for the static neutral source), and a displacement of 4 "
    "keypoints leaves the emotion variant at 0.05 (0.1 with another judge seed)"
)
KNOWN_GAPS = {
    "mead: neutral M-LMD below the static source (the mouth moves with speech)": _EMOTIONAL_MOUTH,
    "mead: emotion variant's emotion accuracy >= neutral variant's + 0.2": _NO_EXPRESSION,
}
CLAIMS = [r.claim for r in relations({"mead": {}, "lrw": {}})]


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[c]))
        if c in KNOWN_GAPS
        else c
        for c in CLAIMS
    ],
)
def test_demo_relation_holds(metrics, claim):
    check = next(r for r in relations(metrics) if r.claim == claim)
    assert check.holds, f"{check.claim}: {check.detail}"


def test_known_gaps_name_real_relations():
    assert set(KNOWN_GAPS) <= set(CLAIMS)


def test_demo_baselines_are_real_rows(metrics):
    for dataset in ("mead", "lrw"):
        rows = metrics[dataset]
        for variant in ("static_source", "reconstruction", "neutral", "emotion"):
            assert rows[variant]["clips"] >= 2, (dataset, variant)
        # the generated frames hold faces: the landmarker found them on most clips
        assert rows["emotion"]["f_lmd"] is not None
    training = metrics["training"]
    for stage in ("fomm", "a2fd", "emotion"):
        assert training[stage]["loss_last"] < training[stage]["loss_first"], stage
    # Stage 2 starts from stage 1's weights (its loss starts low) and runs 40 steps of batch 2:
    # 4-step windows are noise; it must not diverge.
    finetune = training["a2fd_finetune"]
    assert finetune["loss_last"] < 1.25 * finetune["loss_first"]
