"""Training's fault handling (faults a fault-injection run found, fixed): a killed or
stopped and resumed stage writes a straight run's checkpoint bytes; a checkpoint past the
stage's ``steps`` is not resumed; a batch larger than the data, an upstream checkpoint of
other sizes, a torch file that is not a checkpoint, a bad device and a full disk each stop
with one line naming the file or the parameter; checkpoints record their upstream
checkpoints (``upstream``) and a stage started on other ones starts afresh.

Tiny profile on the sample generator's clips (``tests/test_train.py``'s fixtures)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch

from eamm.checkpoint import file_fingerprint, load_checkpoint, save_checkpoint
from eamm.errors import EammError
from eamm.models.build import build_networks, profile
from eamm.stages import STAGE_DIRS
from eamm.tensors import pick_device
from eamm.train.build import build_stage
from eamm.train.loop import train_stage
from tests.test_train import (  # noqa: F401  (sample, data_root: fixtures)
    JUDGE_SIZES,
    MODEL,
    TRAINER,
    data_root,
    sample,
    stage_params,
)

pytestmark = pytest.mark.slow

CHECKPOINT = "checkpoint.pt"


class Killed(Exception):
    """Stands for kill -9 in the middle of a run (after a checkpoint, before the next)."""


def train(
    name: str,
    data: Path,
    models: Path,
    steps: int,
    kill_at: int | None = None,
    trainer=TRAINER,
    recorded_model: dict = MODEL,
    **overrides,
) -> Path:
    """``tests/test_train.py``'s ``run``; with ``kill_at`` the run dies when that step starts
    (0-based), checkpoints written before it kept. ``recorded_model``: the ``model`` section
    the run records (the networks are ``MODEL``'s)."""
    params = stage_params(name, steps, **overrides)
    stage, fingerprint = build_stage(name, MODEL, params, trainer, data, models, JUDGE_SIZES)
    if kill_at is not None:
        loss_fn = stage.loss_fn

        def dying(batch, step):
            if step == kill_at:
                raise Killed(step)
            return loss_fn(batch, step)

        stage.loss_fn = dying
    settings = {"model": recorded_model, name: params.model_dump(), "trainer": trainer.model_dump()}
    out = models / STAGE_DIRS[name]
    train_stage(stage, params, trainer, out, fingerprint, settings)
    return out / CHECKPOINT


@pytest.fixture(scope="module")
def fomm_runs(data_root, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    """train_fomm for 4 steps straight; killed at step 3 (last checkpoint at 2) and run again;
    stopped at 2 (``fresh2``: that run's checkpoint) and resumed to 4."""
    root = tmp_path_factory.mktemp("fomm_runs")
    runs = {"straight": train("train_fomm", data_root, root / "straight", 4)}
    with pytest.raises(Killed):
        train("train_fomm", data_root, root / "killed", 4, kill_at=3)
    assert load_checkpoint(root / "killed" / "fomm" / CHECKPOINT)["step"] == 2
    runs["killed"] = train("train_fomm", data_root, root / "killed", 4)
    half = train("train_fomm", data_root, root / "stopped", 2)
    runs["fresh2"] = root / "fresh2.pt"
    shutil.copy(half, runs["fresh2"])
    runs["stopped"] = train("train_fomm", data_root, root / "stopped", 4)
    return runs


def test_a_resumed_run_writes_the_straight_runs_bytes(fomm_runs):
    """The resumed runs' Adam states hold the ``'step'`` key read back from the old checkpoint
    (and their history its ``'loss/total'``): equal values, other string objects, which
    pickle wrote as other bytes. DVC hashes the file, so the bytes must be the same."""
    straight = fomm_runs["straight"].read_bytes()
    for label in ("killed", "stopped"):
        state = load_checkpoint(fomm_runs[label])
        assert [h["step"] for h in state["history"]] == [1, 2, 3, 4]
        assert fomm_runs[label].read_bytes() == straight, label


def test_steps_below_the_checkpoint_start_afresh(fomm_runs, data_root, tmp_path, capsys):  # noqa: F811
    """A 4-step checkpoint and ``steps: 2``: not resumed (it is not a 2-step model), one line
    says why, and the result is a fresh 2-step run's file."""
    (tmp_path / "fomm").mkdir()
    shutil.copy(fomm_runs["straight"], tmp_path / "fomm" / CHECKPOINT)
    capsys.readouterr()
    (tmp_path / "fomm" / "metrics.json").write_text("{}")  # the earlier run's
    path = train("train_fomm", data_root, tmp_path, 2)
    out = capsys.readouterr().out
    assert (
        f"{path}: checkpoint is at step 4, past train_fomm.steps 2; starting train_fomm afresh "
        f"(the earlier run's checkpoint, metrics and plots moved to {tmp_path / 'fomm/previous'})"
        in out
    )
    assert path.read_bytes() == fomm_runs["fresh2"].read_bytes()
    previous = tmp_path / "fomm" / "previous"  # kept, not overwritten
    assert (previous / CHECKPOINT).read_bytes() == fomm_runs["straight"].read_bytes()
    assert (previous / "metrics.json").read_text() == "{}"


def test_an_edit_to_a_profile_the_run_does_not_use_resumes_it(
    fomm_runs,
    data_root,  # noqa: F811
    tmp_path,
    capsys,
):
    """A run of the ``tiny`` profile resumes after an edit to another profile (it started
    afresh: under ``dvc repro`` an edit to the demo's profile set every reference run aside)
    and after an edit to a network of its profile it does not build (stage 3's retrained FOMM
    to the same weights); an edit to its own networks still starts it afresh."""
    other = {"block_expansion": 64}
    own = MODEL["profiles"][MODEL["profile"]]
    stage3 = {**own, "emotion": {**own.get("emotion", {}), "block_expansion": 16}}
    for case, (edited, afresh) in enumerate(
        (
            ({**MODEL, "profiles": {**MODEL["profiles"], "reference": other}}, False),
            ({**MODEL, "profiles": {**MODEL["profiles"], MODEL["profile"]: stage3}}, False),
            ({**MODEL, "profiles": {MODEL["profile"]: other}}, True),
        )
    ):
        folder = tmp_path / str(case)
        (folder / "fomm").mkdir(parents=True)
        shutil.copy(fomm_runs["fresh2"], folder / "fomm" / CHECKPOINT)
        capsys.readouterr()
        path = train("train_fomm", data_root, folder, 4, recorded_model=edited)
        assert ("trained with other settings" in capsys.readouterr().out) is afresh
        assert (folder / "fomm" / "previous").exists() is afresh
        if not afresh:  # steps 3 and 4 trained on from the 2-step run: the straight run's
            straight = load_checkpoint(fomm_runs["straight"])["models"]
            for name, weights in load_checkpoint(path)["models"].items():
                for key, value in weights.items():
                    assert torch.equal(value, straight[name][key]), (name, key)


def test_a_run_set_aside_is_put_back_when_its_settings_are(fomm_runs, data_root, tmp_path, capsys):  # noqa: F811
    """``lr`` changed and back: the first run went to ``previous/`` and was replaced there by
    the second, then trained again from step 0 (the same bytes, minutes or days later). Now
    it is put back and resumed, the second run kept in ``previous/``; a swap a kill stopped
    is finished by the next run."""
    from eamm.train.loop import PREVIOUS_RUN, RESTORING, _finish_swap

    folder = tmp_path / "models"
    (folder / "fomm").mkdir(parents=True)
    shutil.copy(fomm_runs["fresh2"], folder / "fomm" / CHECKPOINT)
    other = train("train_fomm", data_root, folder, 2, lr=5e-4)
    assert (folder / "fomm" / PREVIOUS_RUN / CHECKPOINT).read_bytes() == fomm_runs[
        "fresh2"
    ].read_bytes()
    second = other.read_bytes()
    capsys.readouterr()
    path = train("train_fomm", data_root, folder, 4)
    assert "put back and resumed" in capsys.readouterr().out
    assert path.read_bytes() == fomm_runs["straight"].read_bytes()  # steps 3, 4 trained on
    assert (folder / "fomm" / PREVIOUS_RUN / CHECKPOINT).read_bytes() == second
    assert not (folder / "fomm" / RESTORING).exists()

    out = folder / "fomm"  # killed after the first rename: finished, nothing lost
    (out / PREVIOUS_RUN).rename(out / RESTORING)
    _finish_swap(out)
    assert (out / CHECKPOINT).read_bytes() == second
    assert (out / PREVIOUS_RUN / CHECKPOINT).read_bytes() == fomm_runs["straight"].read_bytes()


def test_trainer_settings_that_do_not_act_on_this_device_resume(
    fomm_runs,
    data_root,  # noqa: F811
    tmp_path,
    capsys,
):
    """On a CPU, ``bf16`` (autocast on GPUs only), the GPU's ``channels_last``, ``device: cpu``
    for ``auto`` and ``processes: 1`` for null train the same weights: the run resumes (each
    set it aside and started afresh). The CPU's own ``channels_last_cpu`` still restarts it."""
    for update, afresh in (
        (
            {
                "bf16": not TRAINER.bf16,
                "channels_last": not TRAINER.channels_last,
                "device": "cpu",
                "processes": 1,
            },
            False,
        ),
        ({"channels_last_cpu": not TRAINER.channels_last_cpu}, True),
    ):
        folder = tmp_path / str(afresh)
        (folder / "fomm").mkdir(parents=True)
        shutil.copy(fomm_runs["fresh2"], folder / "fomm" / CHECKPOINT)
        capsys.readouterr()
        path = train("train_fomm", data_root, folder, 4, trainer=TRAINER.model_copy(update=update))
        assert ("trained with other settings" in capsys.readouterr().out) is afresh
        if not afresh:
            assert [h["step"] for h in load_checkpoint(path)["history"]] == [1, 2, 3, 4]


def test_a_moved_vgg_file_resumes_and_a_changed_setting_is_named(
    data_root,  # noqa: F811
    tmp_path,
    capsys,
):
    """The VGG19 file's place is not a setting: a run resumes after it moved (a long GPU run
    started afresh on the same weights). A setting that did change is named in the line."""

    def placed(folder: str) -> dict:
        return {**MODEL, "perceptual": {**MODEL["perceptual"], "vgg_weights": f"/{folder}/v.pth"}}

    train("train_fomm", data_root, tmp_path, 2, recorded_model=placed("a"))
    capsys.readouterr()
    path = train("train_fomm", data_root, tmp_path, 4, recorded_model=placed("b"))
    assert "afresh" not in capsys.readouterr().out
    assert [h["step"] for h in load_checkpoint(path)["history"]] == [1, 2, 3, 4]
    train("train_fomm", data_root, tmp_path, 4, recorded_model=placed("b"), lr=5e-4)
    assert "trained with other settings (train_fomm.lr: " in capsys.readouterr().out


def test_the_restart_line_names_the_setting_read_and_defaults_fill_missing_keys():
    """A trainer key params.yaml leaves out is its default (``bf16`` read as False restarted
    an identical run on a bf16 GPU); the line names the channels-last key the device reads,
    and a key set on one side only shows as unset (it printed an empty list)."""
    from eamm.train.loop import _as_run, _setting_changes

    cpu = torch.device("cpu")
    full = {"trainer": TRAINER.model_dump()}
    assert _as_run({"trainer": {"seed": 0, "num_workers": 0}}, cpu, 1) == _as_run(full, cpu, 1)
    flipped = {"trainer": {**full["trainer"], "channels_last_cpu": not TRAINER.channels_last_cpu}}
    changes = _setting_changes(_as_run(full, cpu, 1), _as_run(flipped, cpu, 1))
    assert changes == (
        f"trainer.channels_last_cpu: {TRAINER.channels_last_cpu} -> {not TRAINER.channels_last_cpu}"
    )
    # a device or process count named stays named: another one restarts the run
    named = {"trainer": {**full["trainer"], "processes": 2}}
    assert _setting_changes(_as_run(named, cpu, 1), _as_run(full, cpu, 1)) == (
        "trainer.processes: 2 -> 1"
    )
    gpu = {"trainer": {**full["trainer"], "device": "cuda:1"}}
    assert _setting_changes(_as_run(gpu, cpu, 1), _as_run(full, cpu, 1)) == (
        "trainer.device: cuda -> cpu"
    )
    assert _setting_changes({"judges": {}}, {}) == "judges: {} -> unset"
    assert _setting_changes({"a": None}, {}) == "a: None -> unset"


def test_a_batch_larger_than_the_training_samples_is_refused(data_root, tmp_path):  # noqa: F811
    """Samples are drawn with replacement: 5000 of them from ~128 clips was accepted and the
    process grew until the OOM killer took it, without a word. A batch above the clip count
    but within their frames (the tests' one-clip stages, batch 2) still trains."""
    params = stage_params("train_fomm", 2).model_copy(update={"batch_size": 5000})
    with pytest.raises(EammError) as err:
        build_stage("train_fomm", MODEL, params, TRAINER, data_root, tmp_path)
    message = str(err.value)
    assert message.startswith("params: train_fomm.batch_size 5000 is more than the ")
    assert " frames of the 3 training clip(s) in " in message and "manifest.parquet" in message
    assert "\n" not in message
    params = stage_params("train_sync_expert", 2).model_copy(update={"batch_size": 3})  # 1 LRW clip
    stage, _ = build_stage(
        "train_sync_expert", MODEL, params, TRAINER, data_root, tmp_path, JUDGE_SIZES
    )
    assert len(stage.dataset) == 1


def _other_fomm(path: Path, **kp_detector: object) -> Path:
    """A FOMM checkpoint of other keypoint-detector settings (a width, a temperature), as
    another params file would have trained it."""
    model = {**MODEL, "profiles": {k: dict(v) for k, v in MODEL["profiles"].items()}}
    sizes = model["profiles"][MODEL["profile"]]
    sizes["kp_detector"] = {**sizes["kp_detector"], **kp_detector}
    nets = build_networks(profile(model))
    payload = {
        "stage": "train_fomm",
        "step": 1,
        "models": {k: nets[k].state_dict() for k in ("kp_detector", "generator")},
        "params": {"model": model},
    }
    return save_checkpoint(payload, path)


def test_an_upstream_checkpoint_of_other_sizes_is_named(data_root, tmp_path):  # noqa: F811
    """Was: ``RuntimeError: Error(s) in loading state_dict`` and 6 KB of size mismatches."""
    width = profile(MODEL)["kp_detector"]["block_expansion"]
    path = _other_fomm(tmp_path / "fomm" / CHECKPOINT, block_expansion=2 * width)
    params = stage_params("train_a2fd", 2)
    with pytest.raises(EammError) as err:
        build_stage("train_a2fd", MODEL, params, TRAINER, data_root, tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path}: its kp_detector has other sizes than these params build")
    assert (
        f"model.profiles.{MODEL['profile']}.kp_detector.block_expansion: {2 * width} in that "
        f"checkpoint, {width} in the params" in message
    )
    assert "\n" not in message and len(message) < 400


def test_an_upstream_trained_with_another_temperature_is_named(data_root, tmp_path):  # noqa: F811
    """The keypoint detector's temperature is a setting, not a weight: a FOMM trained with
    another one loaded, and stage 1's teacher ran at the params' temperature, without a word."""
    ours = profile(MODEL)["kp_detector"]["temperature"]
    path = _other_fomm(tmp_path / "fomm" / CHECKPOINT, temperature=2 * ours)
    params = stage_params("train_a2fd", 2)
    with pytest.raises(EammError) as err:
        build_stage("train_a2fd", MODEL, params, TRAINER, data_root, tmp_path)
    assert str(err.value) == (
        f"{path}: its kp_detector was trained with other settings than these params build "
        f"(model.profiles.{MODEL['profile']}.kp_detector.temperature: {2 * ours} in that "
        f"checkpoint, {ours} in the params): train train_fomm again with these params, or use "
        "the params it was trained with"
    )


def test_a_torch_file_holding_a_list_is_not_a_checkpoint(data_root, tmp_path):  # noqa: F811
    """Was: ``AttributeError: 'list' object has no attribute 'get'``; the file stays."""
    path = tmp_path / "fomm" / CHECKPOINT
    path.parent.mkdir()
    torch.save([1, 2, 3], path)
    before = path.read_bytes()
    with pytest.raises(EammError, match="not a checkpoint") as err:
        train("train_fomm", data_root, tmp_path, 2)
    assert str(err.value) == (
        f"{path}: not a checkpoint (a torch.save file holding a list, not a checkpoint's dict)"
    )
    assert path.read_bytes() == before


def test_a_bad_device_names_its_setting(data_root, tmp_path, monkeypatch):  # noqa: F811
    """Was: ``RuntimeError: Invalid device string: 'gpu0'`` and, on a CPU-only torch,
    ``AssertionError: Torch not compiled with CUDA enabled``."""
    with pytest.raises(EammError, match=r"^params: trainer\.device 'gpu0' is not a device \("):
        train(
            "train_fomm",
            data_root,
            tmp_path,
            2,
            trainer=TRAINER.model_copy(update={"device": "gpu0"}),
        )
    with pytest.raises(EammError, match=r"^params: generate\.device 'gpu0' is not a device"):
        pick_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EammError, match=r"^params: trainer\.device is 'cuda', but this machine"):
        pick_device("cuda", "trainer.device")
    assert pick_device("auto", "trainer.device") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_a_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    """Was: ``OSError: [Errno 28] No space left on device``, no path."""
    path = save_checkpoint({"stage": "x", "step": 1}, tmp_path / "fomm" / CHECKPOINT)
    before = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("eamm.atomic.os.fsync", full_disk)
    with pytest.raises(EammError) as err:
        save_checkpoint({"stage": "x", "step": 2}, path)
    assert isinstance(err.value, OSError)  # callers catching OSError still do
    assert str(err.value) == (
        f"{path}: cannot write the checkpoint: No space left on device "
        "(the previous checkpoint is kept)"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [CHECKPOINT]


def test_checkpoints_record_their_upstream_and_resume_only_on_it(
    fomm_runs,
    data_root,  # noqa: F811
    tmp_path,
    capsys,
):
    """``upstream``: upstream stage -> file_fingerprint of the checkpoint the stage loaded
    (empty for FOMM). A stage whose recorded upstream differs starts afresh with one line; a
    checkpoint from before the key (unknown upstream) still resumes."""
    assert load_checkpoint(fomm_runs["straight"])["upstream"] == {}
    fomm = tmp_path / "fomm" / CHECKPOINT
    fomm.parent.mkdir()
    shutil.copy(fomm_runs["fresh2"], fomm)
    a2fd = train("train_a2fd", data_root, tmp_path, 1)
    assert load_checkpoint(a2fd)["upstream"] == {"train_fomm": file_fingerprint(fomm)}
    # a checkpoint written before ``upstream`` existed: resumed
    old = load_checkpoint(a2fd)
    del old["upstream"]
    save_checkpoint(old, a2fd)
    capsys.readouterr()
    train("train_a2fd", data_root, tmp_path, 2)
    assert "afresh" not in capsys.readouterr().out
    state = load_checkpoint(a2fd)
    assert [h["step"] for h in state["history"]] == [1, 2]
    assert state["upstream"] == {"train_fomm": file_fingerprint(fomm)}
    # another FOMM under it: not resumed, and the line says which upstream changed
    shutil.copy(fomm_runs["straight"], fomm)
    train("train_a2fd", data_root, tmp_path, 2)
    out = capsys.readouterr().out
    assert (
        f"{a2fd}: trained from other upstream checkpoint(s) (train_fomm); "
        "starting train_a2fd afresh" in out
    )
    assert load_checkpoint(a2fd)["upstream"] == {"train_fomm": file_fingerprint(fomm)}
    # the judges start from no checkpoint
    params = stage_params("train_sync_expert", 1)
    stage, _ = build_stage(
        "train_sync_expert", MODEL, params, TRAINER, data_root, tmp_path, JUDGE_SIZES
    )
    assert stage.upstream == {}


def test_a_stage_refuses_upstreams_of_two_training_runs(fomm_runs, data_root, tmp_path):  # noqa: F811
    """finetune_a2fd loads FOMM and stage 1; a stage 1 trained on another FOMM than the one
    beside it was fine-tuned with exit 0 (a folder mixing two runs)."""
    fomm = tmp_path / "fomm" / CHECKPOINT
    fomm.parent.mkdir()
    shutil.copy(fomm_runs["fresh2"], fomm)
    a2fd = train("train_a2fd", data_root, tmp_path, 1)
    shutil.copy(fomm_runs["straight"], fomm)  # another run's FOMM
    params = stage_params("finetune_a2fd", 1)
    with pytest.raises(EammError, match=rf"^{a2fd}: trained from another train_fomm checkpoint"):
        build_stage("finetune_a2fd", MODEL, params, TRAINER, data_root, tmp_path, JUDGE_SIZES)
    shutil.copy(fomm_runs["fresh2"], fomm)  # the one it was trained from: accepted
    build_stage("finetune_a2fd", MODEL, params, TRAINER, data_root, tmp_path, JUDGE_SIZES)


def test_missing_upstream_checkpoint_names_the_stage_to_train_first(data_root, tmp_path):  # noqa: F811
    with pytest.raises(EammError) as err:
        train("train_a2fd", data_root, tmp_path / "models", steps=1)
    message = str(err.value)
    assert str(tmp_path / "models" / STAGE_DIRS["train_fomm"] / CHECKPOINT) in message
    assert "no checkpoint of train_fomm" in message and "eamm train train_fomm" in message


def test_a_zeroed_upstream_checkpoint_is_refused_before_the_run(tmp_path):
    """Found only inside the flow, after Prefect's server and the data (about 9 s)."""
    from eamm.train.build import upstream_checkpoints

    fomm = tmp_path / STAGE_DIRS["train_fomm"] / CHECKPOINT
    fomm.parent.mkdir()
    fomm.write_bytes(bytes(4096))
    with pytest.raises(EammError, match=r"checkpoint.pt: not a checkpoint \(truncated, damaged"):
        upstream_checkpoints("train_a2fd", tmp_path)


def test_an_emotion_judge_of_one_emotion_is_refused(data_root):  # noqa: F811
    """A MEAD manifest of one emotion trained the judge to loss 0 and held-out accuracy 1.0,
    and the report counted "emotion judge >= 0.8" as holding."""
    from eamm.clips import load_clips
    from eamm.train.build import build_for_timing

    manifest = data_root / "mead" / "processed" / "manifest.parquet"
    sad = [c for c in load_clips(manifest, ("train",)) if c.emotion == "sad"]
    params = stage_params("train_emotion_classifier", 2).model_copy(update={"batch_size": 1})
    with pytest.raises(EammError, match=r"its 1 training clip\(s\) hold one emotion \(sad\)"):
        build_for_timing("train_emotion_classifier", MODEL, params, TRAINER, sad, JUDGE_SIZES)
