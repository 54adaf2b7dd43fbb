"""What a training stage's folder and its checkpoints say (a hunt's findings): the files an
earlier end drew go when a run trains on, a killed writer's staged checkpoint goes, and an
unfinished, misplaced or mislabelled input is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from eamm.checkpoint import load_checkpoint, require_stage, unfinished
from eamm.config import StageParams
from eamm.errors import EammError
from eamm.manifest import require_dataset, write_manifest
from eamm.train.recipe import resolve_stage
from tests.conftest import ROOT
from tests.test_manifest import ok_row
from tests.test_recipe import toy_stage, train_toy


def failing_at(net: torch.nn.Module, bad_step: int):
    stage = toy_stage(net)
    inner = stage.loss_fn

    def loss_fn(batch: dict, step: int):
        if step == bad_step:
            raise RuntimeError("killed")
        return inner(batch, step)

    stage.loss_fn = loss_fn
    return stage


def test_a_run_that_trains_on_drops_what_the_earlier_end_drew(tmp_path: Path, capsys) -> None:
    """metrics.json (its step, a judge's held-out numbers) and the judges' figures described
    the earlier end while a longer run was under way: a run killed then left a 24-step judge
    beside the 1000-step run's accuracy, which the evaluation reported. A killed checkpoint
    write's staged file (a full checkpoint's size) was never removed."""
    out = tmp_path / "toy"
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    train_toy(toy_stage(net), StageParams(steps=2, batch_size=2, checkpoint_every=1), out)
    assert (out / "metrics.json").is_file()
    (out / "confusion.png").write_bytes(b"the earlier end's")
    (out / ".checkpoint.pt.k3x9.partial").write_bytes(b"x" * 64)
    longer = StageParams(steps=4, batch_size=2, checkpoint_every=1)
    with pytest.raises(RuntimeError, match="killed"):
        train_toy(failing_at(net, 3), longer, out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "dvclive"]
    state = load_checkpoint(out / "checkpoint.pt")
    note = unfinished(state, out / "checkpoint.pt", "toy")
    assert (
        note == f"{out / 'checkpoint.pt'}: toy stopped at step 3 of 4 (its training did not finish)"
    )
    capsys.readouterr()
    train_toy(toy_stage(net), longer, out)
    assert unfinished(load_checkpoint(out / "checkpoint.pt"), out, "toy") == ""
    assert (out / "metrics.json").is_file()
    resumed = f"{out / 'checkpoint.pt'}: resuming toy at step 3 of 4 (1 to go)"
    assert resumed in capsys.readouterr().out.splitlines()  # it went on without a word


def test_a_checkpoint_of_another_stage_is_named() -> None:
    """A stage 1 checkpoint copied over stage 2's trained stage 3 from it without a word, and
    generation rendered it as stage 2's; a swap of FOMM's gave a lineage message naming the
    wrong stage."""
    path = Path("models/a2fd_finetune/checkpoint.pt")
    with pytest.raises(EammError) as err:
        require_stage({"stage": "train_a2fd"}, path, "finetune_a2fd")
    assert str(err.value) == f"{path}: a train_a2fd checkpoint, where finetune_a2fd's belongs"
    require_stage({"stage": "finetune_a2fd"}, path, "finetune_a2fd")
    require_stage({}, path, "finetune_a2fd")  # older files record no stage


def test_a_manifest_of_another_dataset_is_refused(tmp_path: Path) -> None:
    """LRW's manifest in MEAD's place trained the emotion judge on one label ("neutral") to
    held-out accuracy 1.0, and the evaluation filed its clips under LRW."""
    path = write_manifest([ok_row("train/A/A_00001")], tmp_path / "manifest.parquet")
    require_dataset(path, "lrw")
    with pytest.raises(EammError, match=r"rows of dataset 'lrw' in the mead manifest: preprocess"):
        require_dataset(path, "mead")


@pytest.mark.parametrize(
    ("stage", "key", "value", "reason"),
    [
        ("train_fomm", "loss_weights", {"landmark": 10}, "train_fomm.loss_weights.landmark: not a"),
        ("train_emotion", "num_emotion_kp", 0, "greater than or equal to 1"),
    ],
)
def test_a_loss_weight_typo_and_no_emotion_keypoints_are_refused(
    tmp_path: Path, stage: str, key: str, value, reason: str
) -> None:
    """A misspelt loss weight weighed nothing (exit 0); num_emotion_kp 0 was a RuntimeError
    from a convolution, -1 trained with 9 keypoints."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[stage][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(EammError, match=reason):
        resolve_stage(tmp_path / "params.yaml", stage)


def _log_three_steps(folder: Path) -> None:
    from eamm.train.live import training_log

    live = training_log(folder)
    for step in range(1, 4):
        live.step = step
        live.log_metric("loss/total", 1.0 / step)
        live.next_step()
    live.end()


def test_training_logs_hold_no_repository_open(tmp_path: Path, monkeypatch) -> None:
    """dvclive's ``Live`` opened the DVC repository for every log and never closed it: 34 file
    handles here (git pack indexes, DVC's state database), 64 lost per stage in one process;
    under ``ulimit -n 64`` a training run hung in Prefect's crash handler after its last
    step. The logs are dvclive's own files, as before."""
    import os

    monkeypatch.chdir(ROOT)  # the project, a DVC repository, as `dvc repro` runs stages
    before = len(os.listdir("/proc/self/fd"))
    for run in range(3):
        _log_three_steps(tmp_path / str(run))
    assert len(os.listdir("/proc/self/fd")) == before
    plots = tmp_path / "0" / "plots" / "metrics" / "loss" / "total.tsv"
    assert plots.read_text().splitlines() == [
        "step\ttotal",
        "1\t1.0",
        "2\t0.5",
        "3\t0.3333333333333333",
    ]
    summary = json.loads((tmp_path / "0" / "metrics.json").read_text())
    assert summary == {"loss": {"total": 0.3333333333333333}, "step": 3}


@pytest.mark.parametrize("commits", [0, 1])
def test_training_logs_leave_a_git_repository_without_dvc_alone(
    tmp_path: Path, monkeypatch, commits
):
    """Run in a git repository without DVC (a Prefect worker's folder), dvclive ran `dvc
    init` there; in one without commits, training stopped with SCMError "Empty git repo"."""
    import subprocess

    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    if commits:
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    monkeypatch.chdir(tmp_path)
    _log_three_steps(tmp_path / "logs")
    assert not (tmp_path / ".dvc").exists() and (tmp_path / "logs" / "metrics.json").is_file()


@pytest.mark.parametrize("run", ["dvc exp run", "dvc repro", "eamm train"])
def test_training_logs_reach_studio_only_inside_dvc_exp_run(tmp_path: Path, monkeypatch, run):
    """With DVC Studio configured, the logs' live updates go out inside `dvc exp run` only,
    named and based as DVC's environment says (DVC itself sends its start and end); elsewhere
    no commit is known without the repository, and they went out unnamed."""
    import dvclive.studio

    sent = []

    def post(event, baseline, name, client, **kwargs):
        sent.append((event, baseline, name))
        return True

    monkeypatch.setattr(dvclive.studio, "post_live_metrics", post)
    monkeypatch.setenv("DVC_STUDIO_TOKEN", "token")
    monkeypatch.setenv("DVC_STUDIO_REPO_URL", "https://example.org/repo.git")
    if run != "eamm train":
        monkeypatch.setenv("DVC_ROOT", str(ROOT))
    if run == "dvc exp run":
        monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
        monkeypatch.setenv("DVC_EXP_NAME", "sweep-1")
    _log_three_steps(tmp_path / "logs")
    expected = [("data", "a" * 40, "sweep-1")] * 4 if run == "dvc exp run" else []
    assert sent == expected
