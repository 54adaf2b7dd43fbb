"""Evaluation faults found by the fault test of /work/faults2: the report's files replaced as
one set on a full disk, strict JSON (null, not NaN), a judge without a checkpoint named in a
note and in the report, and a judge checkpoint of the wrong kind named in one line.

The evaluation flow runs for real around its per-dataset task, which is replaced by made-up
scores and stills (writing the report is what is tested here, not scoring), so no network is
trained and no media decoded."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eamm.checkpoint import save_checkpoint
from eamm.errors import EammError
from eamm.evaluate import METRICS, VARIANTS, ClipScore
from eamm.judges import EmotionClassifier, SyncExpert
from eamm.judges.scoring import load_judges
from eamm.stages import CONFUSION_PNG, GENERATION_STAGES, OFFSETS_PNG, STAGE_DIRS, checkpoint_path
from tests.conftest import ROOT

PARAMS = ROOT / "params.yaml"
# Every file the evaluate stage writes in its report folder: dvc.yaml's outs and metrics.
STAGE = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]
REPORT = sorted(Path(next(iter(o))).name for o in (*STAGE["outs"], *STAGE["metrics"]))
JUDGE_STAGES = {  # stage -> (its figure, its held-out metrics.json)
    "train_emotion_classifier": (CONFUSION_PNG, {"heldout/accuracy": 0.875, "heldout/clips": 8}),
    "train_sync_expert": (OFFSETS_PNG, {"heldout/offset_accuracy": 0.625, "heldout/clips": 8}),
}


@pytest.fixture
def models(tmp_path) -> Path:
    """The judges' stage folders as their training leaves them: checkpoint, held-out numbers
    and figure; the generation stages' checkpoints are there but not read (the task is
    replaced)."""
    root = tmp_path / "models"
    for stage in GENERATION_STAGES:
        save_checkpoint({"stage": stage, "step": 2, "models": {}}, checkpoint_path(root, stage))
    for stage, (figure, heldout) in JUDGE_STAGES.items():
        save_checkpoint({"stage": stage, "step": 2, "models": {}}, checkpoint_path(root, stage))
        (root / STAGE_DIRS[stage] / "metrics.json").write_text(json.dumps(heldout))
        (root / STAGE_DIRS[stage] / figure).write_bytes(f"{stage}'s figure".encode())
    return root


@pytest.fixture
def scored(monkeypatch):
    """Replace the flow's per-dataset task by made-up rows (``level`` sets their values, so two
    runs write different reports); NaN where a real run has no value (ground-truth PSNR,
    SyncNet without weights)."""
    level = {"value": 1.0}

    def evaluate_dataset(dataset, data_root, checkpoints, params, generate, model, prints, out):
        emotion = "sad" if dataset == "mead" else None
        rows = []
        for k in range(2):
            for variant in VARIANTS:
                values = {m: level["value"] + 0.25 * k for m in METRICS}
                values.update(syncnet_conf=float("nan"), syncnet_dist=float("nan"))
                if variant == "ground_truth":
                    values["psnr"] = float("nan")
                rows.append(ClipScore(dataset, f"{dataset}/{k}", emotion, variant, values))
        tile = np.full((16, 16, 3), int(40 * level["value"]), np.uint8)
        stills = {emotion or dataset: {v: tile for v in ("source", *VARIANTS)}}
        return rows, stills, {}

    monkeypatch.setattr("flows.evaluate.evaluate_dataset", evaluate_dataset)
    return level


def evaluate(models: Path, out: Path) -> dict:
    from flows.evaluate import evaluate_flow

    return evaluate_flow(str(PARAMS), str(out.parent / "data"), str(models), str(out))


def contents(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (hidden staging files included) -> its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_full_disk_leaves_the_previous_report_whole(
    models, scored, tmp_path, monkeypatch, prefect_api
):
    """A disk filling up at the last file of the report (injected ENOSPC while evaluation.md
    is written) leaves every file of the previous report, not metrics.json and
    clip_scores.json of the new run beside the old plots and Markdown; the error is one line
    naming the file and the reason."""
    out = tmp_path / "reports"
    evaluate(models, out)
    before = contents(out)
    assert sorted(before) == REPORT
    scored["value"] = 2.0
    write_bytes = Path.write_bytes

    def full_disk_at_the_markdown(self, data):
        if self.name.startswith(".evaluation.md."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk_at_the_markdown)
    with pytest.raises(OSError) as err:
        evaluate(models, out)
    assert contents(out) == before  # byte for byte, and no staged file left behind
    message = str(err.value)
    assert isinstance(err.value, EammError)  # the CLI's one line, exit 2
    assert message.startswith(f"{out / 'evaluation.md'}: ") and "\n" not in message
    assert "No space left on device" in message

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    evaluate(models, out)  # the disk has room again: the new report, all of it
    after = contents(out)
    assert sorted(after) == REPORT
    assert [n for n in REPORT if after[n] != before[n]] == [
        "clip_scores.json",
        "contact_sheet.png",
        "evaluation.md",
        "metrics.json",
        "metrics.png",
    ]


def _strict(name: str):
    def refuse(constant: str):
        raise ValueError(f"{name}: {constant} is not JSON")

    return refuse


def test_the_reports_json_is_strict(models, scored, tmp_path, prefect_api):
    """clip_scores.json held bare NaN (invalid JSON, which strict readers refuse) where
    metrics.json writes null."""
    out = tmp_path / "reports"
    metrics = evaluate(models, out)
    for name in ("metrics.json", "clip_scores.json"):
        json.loads((out / name).read_text(), parse_constant=_strict(name))
    rows = json.loads((out / "clip_scores.json").read_text())
    truth = next(r for r in rows if r["variant"] == "ground_truth")
    assert truth["scores"]["psnr"] is None and truth["scores"]["syncnet_conf"] is None
    assert truth["scores"]["cpbd"] == 1.0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    text = (out / "evaluation.md").read_text()
    protocol = text[text.index("```json\n") + 8 : text.index("\n```\n")]
    json.loads(protocol, parse_constant=_strict("evaluation.md"))


@pytest.mark.parametrize("stage", list(JUDGE_STAGES))
def test_a_judge_without_a_checkpoint_is_named_not_shown_stale(
    stage, models, scored, tmp_path, capsys, prefect_api
):
    """Its columns stay empty (documented); a note says why, and the report's judges section
    says the same instead of the held-out numbers and figure of its stage folder, which
    describe a network this evaluation did not use."""
    out = tmp_path / "reports"
    evaluate(models, out)  # a report with both judges
    capsys.readouterr()
    missing = checkpoint_path(models, stage)
    missing.unlink()
    metrics = evaluate(models, out)

    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    columns = ("emotion_acc",) if stage == "train_emotion_classifier" else ("sync_conf",)
    assert len(notes) == 1 and f"{missing} is missing" in notes[0]
    assert all(column in notes[0] for column in columns)
    judge = metrics["judges"][STAGE_DIRS[stage]]
    assert judge["missing_checkpoint"] == str(missing)
    assert all(value is None for key, value in judge.items() if key.startswith("heldout"))

    section = (out / "evaluation.md").read_text().split("## Judges (held-out)")[1]
    stale = next(v for k, v in JUDGE_STAGES[stage][1].items() if k != "heldout/clips")
    assert f"| {stale} |" not in section and f"{missing} is missing" in section
    other = next(s for s in JUDGE_STAGES if s != stage)
    assert f"| {next(iter(JUDGE_STAGES[other][1].values()))} |" in section
    figure = {"train_emotion_classifier": "judge_confusion.png"}.get(stage, "judge_offsets.png")
    assert not (out / figure).exists() and f"]({figure})" not in section


def _judge_checkpoint(path: Path, stage: str, net: torch.nn.Module, key: str, sizes: dict):
    save_checkpoint(
        {"stage": stage, "models": {key: net.state_dict()}, "sizes": sizes, "image_size": 32},
        path,
    )


def test_a_judge_checkpoint_of_the_other_judge_is_named_in_one_line(tmp_path):
    """The sync expert's checkpoint placed as the emotion classifier's stopped with
    ``TypeError: EmotionClassifier.__init__() got an unexpected keyword argument``."""
    expert_sizes = dict(block_expansion=4, num_blocks=2, max_features=8, audio_blocks=1)
    classifier_sizes = dict(block_expansion=4, num_blocks=2, max_features=8)
    expert, classifier = SyncExpert(**expert_sizes), EmotionClassifier(**classifier_sizes)
    place = checkpoint_path(tmp_path / "swapped", "train_emotion_classifier")
    _judge_checkpoint(place, "train_sync_expert", expert, "sync_expert", expert_sizes)
    with pytest.raises(EammError) as err:
        load_judges(tmp_path / "swapped", torch.device("cpu"), 15, None)
    assert str(err.value) == (
        f"{place}: not an emotion classifier checkpoint (a train_sync_expert checkpoint)"
    )

    place = checkpoint_path(tmp_path / "other", "train_sync_expert")
    _judge_checkpoint(place, "train_emotion_classifier", classifier, "emotion_classifier", {})
    with pytest.raises(EammError, match=r"not a sync expert checkpoint"):
        load_judges(tmp_path / "other", torch.device("cpu"), 15, None)

    # its own stage, but sizes that do not build its network
    place = checkpoint_path(tmp_path / "sizes", "train_emotion_classifier")
    _judge_checkpoint(place, "train_emotion_classifier", classifier, "emotion_classifier", {})
    with pytest.raises(EammError) as err:
        load_judges(tmp_path / "sizes", torch.device("cpu"), 15, None)
    assert str(err.value).startswith(f"{place}: emotion classifier checkpoint does not match")


def test_a_full_disk_while_recording_a_clip_is_one_line_naming_the_file(tmp_path):
    """It was "error: OSError: [Errno 28] No space left on device", exit 1, naming nothing."""
    from eamm.evaluation_journal import ClipRecord, EvaluationJournal
    from flows.cli import _named_error
    from tests.conftest import mounted_tmpfs

    with mounted_tmpfs(tmp_path / "disk", "size=64k") as disk:
        journal = EvaluationJournal(disk / "journal", {"run": 1})
        big = {"grid": np.random.default_rng(0).integers(0, 255, (300, 300), np.uint8)}
        with pytest.raises(EammError, match=r"000000\.npz: cannot record the clip \(No space"):
            journal.save(0, ClipRecord("a/b", [], "mead", big))
        assert sorted(p.name for p in (disk / "journal").iterdir()) == ["key.json"]
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "reports/metrics.png")
    assert _named_error(full, str(full)).startswith("reports/metrics.png: No space left on device")


def test_a_checkpoint_rewritten_during_the_evaluation_stops_it(tmp_path):
    """Each dataset loads the networks again: a training that rewrote a checkpoint meanwhile
    gave one report from two checkpoints, under the first one's name, with exit 0. The run now
    stops before writing the report, naming the file, and drops its journal."""
    from eamm.checkpoint import checkpoint_fingerprints
    from eamm.evaluation_journal import JOURNAL_DIR
    from flows.evaluate import require_unchanged

    for stage in ("train_fomm", "train_sync_expert"):
        path = checkpoint_path(tmp_path / "models", stage)
        path.parent.mkdir(parents=True)
        save_checkpoint({"stage": stage, "step": 1}, path)
    prints = checkpoint_fingerprints(tmp_path / "models", STAGE_DIRS)
    out = tmp_path / "reports"
    (out / JOURNAL_DIR).mkdir(parents=True)
    require_unchanged(str(tmp_path / "models"), prints, out)  # nothing changed: goes on
    changed = checkpoint_path(tmp_path / "models", "train_sync_expert")
    save_checkpoint({"stage": "train_sync_expert", "step": 6}, changed)
    with pytest.raises(EammError, match=f"^{changed}: changed during the evaluation"):
        require_unchanged(str(tmp_path / "models"), prints, out)
    assert not (out / JOURNAL_DIR).exists()
