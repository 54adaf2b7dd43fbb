"""The judges' held-out figures: the confusion matrix and the offset histogram on made-up
predictions (fixed pixel size, the same bytes every time), the judge stages writing them with no
held-out clips, and the report copying and showing them under the judges' table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from eamm.config import MEAD_EMOTIONS
from eamm.judges import EmotionClassifier, SyncExpert
from eamm.judges.plots import (
    confusion_matrix,
    offset_accuracy,
    plot_confusion,
    plot_offsets,
)
from eamm.judges.training import VALIDATION_SHIFT, validate_classifier, validate_sync
from eamm.report import JUDGE_FIGURES, copy_judge_figures, markdown
from eamm.stages import CONFUSION_PNG, OFFSETS_PNG

INTENDED = ["happy", "happy", "sad", "neutral", "angry", "angry", "fear", "surprised"]
PREDICTED = ["happy", "sad", "sad", "neutral", "angry", "contempt", "fear", "surprised"]


def test_confusion_matrix_counts_rows_as_intended_and_columns_as_predicted():
    counts = confusion_matrix(PREDICTED, INTENDED)
    assert counts.shape == (8, 8) and counts.sum() == len(INTENDED)
    happy, sad = MEAD_EMOTIONS.index("happy"), MEAD_EMOTIONS.index("sad")
    assert counts[happy, happy] == 1 and counts[happy, sad] == 1 and counts[sad, happy] == 0
    assert np.trace(counts) == 6
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        confusion_matrix(["happy", "sad"], ["happy"])


def test_offset_accuracy_counts_within_one_frame():
    assert offset_accuracy([0, 1, -1, 3], 0) == 0.75
    assert offset_accuracy([-5, -4, -7], -VALIDATION_SHIFT) == pytest.approx(2 / 3)
    assert offset_accuracy([], 0) is None


def _png(path) -> tuple[tuple[int, int], bytes]:
    data = path.read_bytes()
    with Image.open(path) as image:
        return image.size, data


@pytest.mark.parametrize("empty", [False, True])
def test_confusion_png_has_a_fixed_size_and_the_same_bytes_every_time(tmp_path, empty):
    counts = confusion_matrix([] if empty else PREDICTED, [] if empty else INTENDED)
    first = _png(plot_confusion(counts, tmp_path / "a" / CONFUSION_PNG))
    second = _png(plot_confusion(counts, tmp_path / "b" / CONFUSION_PNG))
    assert first[0] == (640, 560)
    assert first[1] == second[1]
    assert b"matplotlib" not in first[1]  # no Software entry (the version) in the metadata


def test_offsets_png_has_a_fixed_size_and_the_same_bytes_every_time(tmp_path):
    own, delayed = [0, 0, 1, -3, 0], [-5, -5, -4, 2, -5]
    first = _png(plot_offsets(own, delayed, 15, VALIDATION_SHIFT, tmp_path / "a.png"))
    second = _png(plot_offsets(own, delayed, 15, VALIDATION_SHIFT, tmp_path / "b.png"))
    assert first[0] == (700, 400) and first[1] == second[1]
    other = _png(plot_offsets(own, [0] * 5, 15, VALIDATION_SHIFT, tmp_path / "c.png"))
    assert other[1] != first[1]


def test_judge_stages_draw_their_figures_even_with_no_held_out_clips(tmp_path):
    """DVC declares the PNGs as outputs, so they exist after every run."""
    torch.manual_seed(0)
    classifier = EmotionClassifier(block_expansion=8, num_blocks=2, max_features=16)
    expert = SyncExpert(
        block_expansion=8, num_blocks=2, max_features=16, audio_blocks=1, embed_dim=16
    )
    cpu = torch.device("cpu")
    assert validate_classifier(classifier, [], 32)(cpu, tmp_path) == {"heldout/clips": 0}
    assert validate_sync(expert, [], 32, vshift=8)(cpu, tmp_path) == {"heldout/clips": 0}
    assert _png(tmp_path / CONFUSION_PNG)[0] == (640, 560)
    assert _png(tmp_path / OFFSETS_PNG)[0] == (700, 400)
    assert validate_classifier(classifier, [], 32)(cpu) == {"heldout/clips": 0}  # no folder


def _judges() -> dict:
    return {
        "emotion_classifier": {"heldout_accuracy": 0.75, "heldout_clips": 8, "chance": 0.125},
        "sync_expert": {"heldout_offset_accuracy": 0.8, "heldout_clips": 5, "chance": 0.0323},
    }


def test_report_copies_the_judge_figures_and_shows_them_under_the_judges_table(tmp_path):
    models, report = tmp_path / "models", tmp_path / "reports"
    report.mkdir()
    source = models / "emotion_classifier" / CONFUSION_PNG
    plot_confusion(confusion_matrix(PREDICTED, INTENDED), source)
    (report / "judge_offsets.png").write_bytes(b"stale")  # the sync expert has none: removed
    copied = copy_judge_figures(models, report)
    assert copied == ["judge_confusion.png"] and not (report / "judge_offsets.png").exists()
    assert (report / "judge_confusion.png").read_bytes() == source.read_bytes()

    text = markdown({"judges": _judges()}, {}, {}, published={}, judge_figures=list(JUDGE_FIGURES))
    judges = text[text.index("## Judges (held-out)") :]
    table_end = judges.index("| sync expert")
    for name, (caption, _, _) in JUDGE_FIGURES.items():
        assert judges.index(f"![{caption}]({name})") > table_end
    plain = markdown({"judges": _judges()}, {}, {}, published={})
    assert "judge_confusion.png" not in plain and "## Judges (held-out)" in plain


def test_a_judges_metrics_of_another_run_are_not_shown_as_its_own(tmp_path):
    """A judge checkpoint restored or copied without its metrics.json (the checkpoint is
    DVC-cached, metrics.json in git): the report quoted the other run's held-out accuracy
    (0.93 for a 2-step judge whose own was 0.136) and showed its confusion matrix."""
    import json

    from eamm.checkpoint import save_checkpoint
    from eamm.evidence import judge_summary, relations

    models = tmp_path / "models"
    for folder, step, loss, heldout in (
        ("emotion_classifier", 2, 3.11, {"heldout/accuracy": 0.93, "heldout/clips": 44}),
        ("sync_expert", 600, 0.49, {"heldout/offset_accuracy": 1.0, "heldout/clips": 10}),
    ):
        final = {"step": step, "loss/total": loss}
        save_checkpoint({"step": step, "history": [final]}, models / folder / "checkpoint.pt")
        written = final | heldout if folder == "sync_expert" else {"step": 1000, "loss/total": 0.32}
        (models / folder / "metrics.json").write_text(json.dumps(written | heldout))
    judges = judge_summary(models, 15)
    classifier = judges["emotion_classifier"]
    assert classifier["heldout_accuracy"] is None and classifier["heldout_clips"] is None
    assert classifier["other_run"] == (
        f"{models / 'emotion_classifier' / 'metrics.json'} (step 1000, loss/total 0.32) is not "
        f"{models / 'emotion_classifier' / 'checkpoint.pt'}'s run (step 2, loss/total 3.11)"
    )
    assert judges["sync_expert"]["heldout_offset_accuracy"] == 1.0  # its own: kept
    assert "other_run" not in judges["sync_expert"]
    (check,) = [r for r in relations({"judges": judges}) if "held-out accuracy" in r.claim]
    assert check.verdict == "not measured"
    text = markdown({"judges": judges}, {}, {}, published={}, judge_figures=list(JUDGE_FIGURES))
    assert "| accuracy | unknown (another run's metrics.json) | - |" in text
    assert f"**Not its run**: {classifier['other_run']}: its held-out numbers" in text
