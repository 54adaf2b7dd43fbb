"""The committed demo report proves each stage learned: every relation against its baseline
holds in ``reports/metrics.json``, and that file is the one the committed ``dvc.lock``
recorded for the `evaluate` stage (the numbers come from a real `make demo` run)."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from eamm.evidence import count_line, relations
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
    "and stage 3's displacements give the emotion variant 0.15 against the neutral variant's "
    "0.05 (0.2 apart asked), though its own classifier names 0.35 of the clips' emotion "
    "sources; the warp follows the face mesh's landmarks, which miss the smaller brow moves, "
    "and paints no open mouth: the neutral frame warped exactly onto the real frames' 68 "
    "landmarks is named in 0.30 of all 44 test clips, the sample's own warp in 0.59; FOMM at "
    "4000 steps (19 minutes) reaches 0.41, and then stage 3's four keypoints are the limit "
    "(docs/evaluation.md, 'Why the demo's faces show no emotion', 'What a longer run adds')"
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
    # stage 2 (a2fd_finetune) too, since its pixel term is half its loss (3.8 -> 3.2 over 120
    # steps of batch 2; at 0.1 its loss stayed at stage 1's level)
    for stage in ("fomm", "a2fd", "a2fd_finetune", "emotion"):
        assert training[stage]["loss_last"] < training[stage]["loss_first"], stage


def test_what_a_run_did_not_produce_is_not_measured_not_failed(metrics):
    """Without stage 3 (no `emotion` rows), a judge without its checkpoint or no speaker with
    a neutral clip, their relations were listed as failing ("15/28 hold", nine `not:` lines)."""
    trimmed = json.loads(json.dumps(metrics))
    for dataset in ("mead", "lrw"):
        del trimmed[dataset]["emotion"]
    trimmed["judges"]["sync_expert"] = {"missing_checkpoint": "models/sync_expert/checkpoint.pt"}
    checks = relations(trimmed)
    unmeasured = {r.claim for r in checks if not r.measured}
    assert len(unmeasured) == 11 and all(
        r.verdict == "not measured" for r in checks if not r.measured
    )
    assert all(
        ("emotion" in c and "judge" not in c) or c.startswith("sync judge") for c in unmeasured
    )
    assert count_line(checks) == "17/17 hold (11 not measured)"
    assert count_line(relations(metrics)) == "27/28 hold"
    no_neutral = json.loads(json.dumps(metrics))
    no_neutral["mead"]["emotion"]["emotion_kp_from_neutral"] = None
    (check,) = [r for r in relations(no_neutral) if "than from the speaker's neutral" in r.claim]
    assert not check.measured and not check.holds


def test_means_over_different_clips_are_not_compared(metrics):
    """A real dataset where two of seven test clips had no neutral clip of their speaker:
    stage 3's "reads the expression" relation held by 0.93 px, all of it those two clips'
    `emotion_kp` counted on one side only (over the five both had: 40.12298 vs 40.12296)."""
    partial = json.loads(json.dumps(metrics))
    emotion = partial["mead"]["emotion"]
    emotion["emotion_kp_from_neutral"] = emotion["emotion_kp"] + 1
    emotion["emotion_kp_from_neutral_clips"] = emotion["clips"] - 2
    (check,) = [r for r in relations(partial) if "than from the speaker's neutral" in r.claim]
    assert (check.measured, check.holds) == (False, False)
    assert check.detail.endswith(
        f"(over {emotion['clips']} and {emotion['clips'] - 2} clips: not the same clips)"
    )
    static = partial["lrw"]["static_source"]
    static["m_lmd_clips"] = static["clips"] - 1  # a clip whose still source showed no face
    lmd = [r for r in relations(partial) if r.claim.startswith("lrw: neutral M-LMD below")]
    assert [r.verdict for r in lmd] == ["not measured"]


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4)


def test_means_over_different_clips_are_compared_over_the_clips_both_have(metrics):
    """With the run's ``clip_scores.json`` (``eamm evaluate``, the report, ``eamm summary``),
    two means over different clips are compared over the clips both sides have: stage 3's
    "reads the expression" relation is measured where only some test speakers have a neutral
    clip (a real MEAD download's), instead of left unmeasured; and two means over as many
    clips but not the same ones (each side missing another clip's value) are paired too."""
    from eamm.evidence import clip_scores_beside

    scores = clip_scores_beside(METRICS)
    rows = [r["scores"] for r in scores if r["dataset"] == "mead" and r["variant"] == "emotion"]
    count = metrics["mead"]["emotion"]["clips"]
    assert len(rows) == count > 4
    partial = json.loads(json.dumps(metrics))
    emotion = partial["mead"]["emotion"]
    for row in rows[:2]:  # two clips whose speaker has no neutral clip
        row["emotion_kp_from_neutral"] = None
    emotion["emotion_kp_from_neutral"] = _mean(r["emotion_kp_from_neutral"] for r in rows[2:])
    emotion["emotion_kp_from_neutral_clips"] = count - 2
    claim = "than from the speaker's neutral"
    (check,) = [r for r in relations(partial, scores) if claim in r.claim]
    a, b = (_mean(r[m] for r in rows[2:]) for m in ("emotion_kp", "emotion_kp_from_neutral"))
    assert check.measured and check.holds == (a < b)
    assert (
        check.detail
        == f"{a} vs {b} (over the {count - 2} clips both have, of {count} and {count - 2})"
    )
    (unpaired,) = [r for r in relations(partial) if claim in r.claim]
    assert not unpaired.measured
    # as many clips on both sides, not the same: the first clip has no emotion_kp either
    rows[0]["emotion_kp"], rows[1]["emotion_kp"] = None, rows[0]["emotion_kp"] or 1.0
    rows[0]["emotion_kp_from_neutral"] = 99.0
    emotion["emotion_kp"] = _mean(r["emotion_kp"] for r in rows[1:])
    emotion["emotion_kp_clips"] = count - 1
    emotion["emotion_kp_from_neutral"] = _mean(
        r["emotion_kp_from_neutral"] for r in [rows[0], *rows[2:]]
    )
    emotion["emotion_kp_from_neutral_clips"] = count - 1
    (check,) = [r for r in relations(partial, scores) if claim in r.claim]
    assert check.detail.endswith(
        f"(over the {count - 2} clips both have, of {count - 1} and {count - 1})"
    )
    assert relations(metrics, scores) == relations(metrics)  # the same clips: as before


def test_clip_scores_of_another_run_are_not_paired(metrics):
    """A ``clip_scores.json`` whose rows do not make ``metrics.json``'s means (another run's)
    gave the numbers of the pairing; an older one's NaN values were paired as values ("nan vs
    8.0", over more clips than one side had)."""
    from eamm.evidence import clip_scores_beside

    scores = clip_scores_beside(METRICS)
    partial = json.loads(json.dumps(metrics))
    emotion = partial["mead"]["emotion"]
    emotion["emotion_kp_from_neutral_clips"] = emotion["clips"] - 2
    claim = "than from the speaker's neutral"
    (check,) = [r for r in relations(partial, scores) if claim in r.claim]
    assert not check.measured and check.detail.endswith("clips: not the same clips)")
    rows = [r["scores"] for r in scores if r["dataset"] == "mead" and r["variant"] == "emotion"]
    rows[0]["emotion_kp_from_neutral"] = float("nan")
    emotion["emotion_kp_from_neutral"] = _mean(r["emotion_kp_from_neutral"] for r in rows[1:])
    emotion["emotion_kp_from_neutral_clips"] = emotion["clips"] - 1
    (check,) = [r for r in relations(partial, scores) if claim in r.claim]
    assert check.measured and "nan" not in check.detail
    assert check.detail.endswith(
        f"(over the {len(rows) - 1} clips both have, of {len(rows)} and {len(rows) - 1})"
    )
