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
_NO_EXPRESSION = (
    "the 64-px FOMM puts little of an expression on a neutral face: its reconstruction with the "
    "real frames' keypoints from the speaker's neutral frame is named right in 0.35 of the MEAD "
    "test clips by the blur-robust judge (the real clips 0.95, the still neutral frame 0.10), "
    "and stage 3's displacements give the emotion variant 0.10 against the neutral variant's "
    "0.15 (0.2 apart asked), though its own classifier names 0.40 of the clips' emotion "
    "sources; the warp follows the face mesh's landmarks, which miss the smaller brow moves, "
    "and paints no open mouth (docs/evaluation.md, 'Why the demo's faces show no emotion')"
)
CLAIMS = [r.claim for r in relations({"mead": {}, "lrw": {}})]
KNOWN_GAPS = {
    "mead: emotion variant's emotion accuracy >= neutral variant's + 0.2": _NO_EXPRESSION,
}


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
    # Stage 2 starts from stage 1's weights (its loss starts low) and runs 40 steps of batch 2
    # (per-step loss spread about 0.5 around 3): its 10-step windows are noise; it must not
    # diverge.
    finetune = training["a2fd_finetune"]
    assert finetune["loss_last"] < 1.25 * finetune["loss_first"]
