"""Training stages on CPU with the tiny profile, on clips of the project's own sample generator
(no ``../shared`` needed): every stage runs, learns on a repeated batch, and resumes to the
identical next-step loss; generation and evaluation run from the tiny checkpoints."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

from eamm.audio import write_wav_s16
from eamm.checkpoint import load_checkpoint
from eamm.config import PreprocessParams, SampleDataParams, StageParams, TrainerParams, load_section
from eamm.datasets.base import ClipEntry, DatasetIndex
from eamm.datasets.index_io import write_index
from eamm.errors import EammError
from eamm.face.landmarks import FaceModels, MediapipeLandmarks
from eamm.manifest import read_rows, write_manifest
from eamm.preprocess.plan import PreprocessRun, run_serially
from eamm.sample.dataset import plan, write_clip, write_portrait
from eamm.sample.voice import synth_speech
from eamm.stages import EAMM_STAGES as STAGES
from eamm.stages import JUDGES, STAGE_DIRS
from eamm.train.build import build_stage, perceptual_vgg
from eamm.train.loop import train_stage
from tests.conftest import ROOT, calibrate_batch_norm, randomise_batch_norm

pytestmark = pytest.mark.slow

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
MODEL, JUDGE_SIZES = PARAMS["model"], PARAMS["judges"]
TRAINER = TrainerParams(num_workers=0, seed=0)


def entry(
    dataset: str, clip_id: str, video: str, emotion: str | None = None, speaker: str | None = None
) -> ClipEntry:
    return ClipEntry(
        clip_id=clip_id,
        dataset=dataset,
        split="train",
        speaker=speaker,
        emotion=emotion,
        level=1 if emotion else None,
        view="front" if emotion else None,
        word="ABOUT" if dataset == "lrw" else None,
        utterance="001",
        video=video,
        audio=None,
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    """Sample clips (one LRW, MEAD neutral, sad and happy of one speaker), a portrait and 7.04 s
    of speech, written by the project's generator."""
    root = tmp_path_factory.mktemp("sample")
    params = load_section(ROOT / "params.yaml", "sample_data", SampleDataParams)
    clips = plan(params)
    lrw = next(c for c in clips if c.dataset == "lrw" and "/train/" in c.video)
    speaker = next(c.speaker for c in clips if c.dataset == "mead")
    mead = {
        c.emotion: c
        for c in clips
        if c.dataset == "mead" and c.speaker == speaker and c.level == 1
        if c.emotion in ("neutral", "sad", "happy")
    }
    for clip in (lrw, *mead.values()):
        write_clip(clip, root / "raw")
    speech = synth_speech(7.04, 16000, seed=0).samples
    return {
        "raw": root / "raw",
        "speaker": speaker,
        "lrw": lrw.video,
        "mead": {emotion: clip.video for emotion, clip in mead.items()},
        "portrait": write_portrait(root / "portrait.png"),
        "speech": write_wav_s16(speech, root / "speech.wav"),
    }


@pytest.fixture(scope="module")
def data_root(sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    params = PreprocessParams(crop_size=64)
    models = FaceModels.from_params(params.landmarks)
    backend = MediapipeLandmarks()
    speaker = sample["speaker"]
    clips = {
        "lrw": [entry("lrw", "train/ABOUT/ABOUT_00001", sample["lrw"])],
        "mead": [
            entry(
                "mead",
                f"{speaker}/front/{emotion}/level_1/001",
                sample["mead"][emotion],
                emotion,
                speaker,
            )
            for emotion in ("neutral", "sad")
        ],
    }
    for dataset, entries in clips.items():
        out = root / dataset / "processed"
        index = out / "index.parquet"
        write_index(DatasetIndex(dataset, str(sample["raw"]), entries, []), index)
        summary = run_serially(PreprocessRun(out, index, params, batch_size=2), models, backend)
        assert summary["by_status"] == {"ok": len(entries)}
    models.close()
    return root


def stage_params(name: str, steps: int, **overrides) -> StageParams:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())[name]
    raw.update(
        steps=steps,
        batch_size=2,
        checkpoint_every=2,
        log_every=1,
        sample_every=100,
        clip_len=8,
        **overrides,
    )
    return StageParams(**raw)


def run(
    name: str,
    data_root: Path,
    models_root: Path,
    steps: int,
    resume: bool = True,
    trainer: TrainerParams = TRAINER,
) -> dict:
    params = stage_params(name, steps)
    stage, fingerprint = build_stage(
        name, MODEL, params, trainer, data_root, models_root, JUDGE_SIZES
    )
    settings = {"model": MODEL, name: params.model_dump(), "trainer": trainer.model_dump()}
    return train_stage(
        stage, params, trainer, models_root / STAGE_DIRS[name], fingerprint, settings, resume=resume
    )


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    models_root = tmp_path_factory.mktemp("models")
    for name in STAGE_DIRS:
        run(name, data_root, models_root, steps=2)
    return models_root


def test_fomm_mouth_weight_adds_a_mouth_term(data_root, tmp_path):
    """``train_fomm.loss_weights.mouth`` (ours, off in EAMM) adds the mouth-box L1 to FOMM's
    loss; without it the loss has no such term."""
    weights = stage_params("train_fomm", 2).loss_weights
    for mouth in (0, 20):
        params = stage_params("train_fomm", 2, loss_weights={**weights, "mouth": mouth})
        root = tmp_path / str(mouth)
        stage, fingerprint = build_stage(
            "train_fomm", MODEL, params, TRAINER, data_root, root, JUDGE_SIZES
        )
        settings = {"model": MODEL, "train_fomm": params.model_dump()}
        train_stage(stage, params, TRAINER, root / "fomm", fingerprint, settings)
        history = load_checkpoint(root / "fomm" / "checkpoint.pt")["history"]
        assert len(history) == 2
        if mouth:
            assert all(h["loss/mouth"] > 0 for h in history)
        else:
            assert all("loss/mouth" not in h for h in history)


def test_all_stages_write_safe_checkpoints(trained):
    for name, folder in STAGE_DIRS.items():
        state = load_checkpoint(trained / folder / "checkpoint.pt")  # weights_only=True
        assert state["stage"] == name and state["step"] == 2
        assert state["manifest_fingerprint"] and state["params"]["model"]["profile"] == "tiny"
        extras = ("metrics.json", "loss.png", "dvclive") + (("samples.png",) * (name in STAGES))
        for extra in extras:
            assert (trained / folder / extra).exists(), (name, extra)
    for judge, figure in zip(JUDGES, ("confusion.png", "offsets.png"), strict=True):
        # every clip here is in the train split: nothing held out, an empty figure
        metrics = json.loads((trained / STAGE_DIRS[judge] / "metrics.json").read_text())
        assert metrics["heldout/clips"] == 0 and metrics["step"] == 2
        assert (trained / STAGE_DIRS[judge] / figure).is_file(), (judge, figure)
    emotion = load_checkpoint(trained / "emotion" / "checkpoint.pt")
    assert len(emotion["emotion_kp"]) == 4 and len(set(emotion["emotion_kp"])) == 4
    assert all(0 <= k < 10 for k in emotion["emotion_kp"])
    assert set(emotion["models"]) == {"emo_detector"}
    finetune = load_checkpoint(trained / "a2fd_finetune" / "checkpoint.pt")
    assert set(finetune["models"]) == {"audio_feature", "kp_detector_a", "generator"}
    # EAMM's stage 2 continues stage 1's Adam (reference 3.3): 2 steps there + 2 here
    adam = finetune["optimizers"]["audio_feature"]["state"]
    assert {int(s["step"]) for s in adam.values()} == {4}
    assert {int(s["step"]) for s in finetune["optimizers"]["generator"]["state"].values()} == {2}
    # which VGG19 the perceptual loss used: none where the stage's layer weights are all 0 (the
    # demo's pixel loss), else a stand-in for the tiny profile without the weights
    for name, folder in (("train_fomm", "fomm"), ("finetune_a2fd", "a2fd_finetune")):
        layers = stage_params(name, 2).loss_weights["perceptual"]
        source = perceptual_vgg(MODEL)[1] if any(layers) else "none (perceptual weights 0)"
        assert load_checkpoint(trained / folder / "checkpoint.pt")["perceptual_vgg"] == source
        metrics = json.loads((trained / folder / "metrics.json").read_text())
        assert metrics["perceptual_vgg"] == source


@pytest.mark.parametrize("name", list(STAGE_DIRS))
def test_loss_decreases_on_a_repeated_batch(name, data_root, trained):
    params = stage_params(name, 1)
    stage, _ = build_stage(name, MODEL, params, TRAINER, data_root, trained, JUDGE_SIZES)
    batch = default_collate([stage.dataset[(0, 7)], stage.dataset[(len(stage.dataset) - 1, 8)]])
    for module in stage.frozen.values():
        module.eval().requires_grad_(False)
    trainable = [p for m in stage.trainable.values() for p in m.parameters()]
    optimizer = torch.optim.Adam(trainable, lr=1e-3, betas=(0.5, 0.999))
    torch.manual_seed(0)
    losses = []
    for step in range(12):
        loss = sum(stage.loss_fn(batch, step)[0].values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(name, [round(v, 3) for v in losses])
    assert min(losses[-3:]) < 0.85 * losses[0]


def test_resume_gives_the_identical_next_step_loss(data_root, trained, tmp_path):
    straight = tmp_path / "straight"
    again = tmp_path / "again"
    resumed = tmp_path / "resumed"
    for root in (straight, again, resumed):
        (root / "fomm").mkdir(parents=True)
        shutil.copy(trained / "fomm" / "checkpoint.pt", root / "fomm" / "checkpoint.pt")
    run("train_a2fd", data_root, straight, steps=4)
    run("train_a2fd", data_root, again, steps=4)
    # the same run twice: the same checkpoint file (DVC's hashes reproduce)
    checkpoint = Path("a2fd") / "checkpoint.pt"
    assert (straight / checkpoint).read_bytes() == (again / checkpoint).read_bytes()
    run("train_a2fd", data_root, resumed, steps=2)
    run("train_a2fd", data_root, resumed, steps=4)
    a = load_checkpoint(straight / "a2fd" / "checkpoint.pt")["history"]
    b = load_checkpoint(resumed / "a2fd" / "checkpoint.pt")["history"]
    assert [h["step"] for h in b] == [1, 2, 3, 4]
    assert [h["loss/total"] for h in a] == [h["loss/total"] for h in b]
    # no wall-clock values in tracked outputs: a resumed run writes the same metrics and logs,
    # and saves the same RNG state (torch.save itself stamps each file with a random id)
    for name in ("metrics.json", "dvclive/metrics.json"):
        assert (straight / "a2fd" / name).read_bytes() == (resumed / "a2fd" / name).read_bytes()
    rng_a = load_checkpoint(straight / "a2fd" / "checkpoint.pt")["rng"]
    rng_b = load_checkpoint(resumed / "a2fd" / "checkpoint.pt")["rng"]
    assert torch.equal(rng_a["torch"], rng_b["torch"])


def test_channels_last_on_the_cpu_learns_the_same_steps(data_root, trained, tmp_path):
    """``trainer.channels_last_cpu`` (NHWC convolutions on the CPU, the demo's) only reorders
    float sums: the same losses to rounding, and reproducible to the byte run to run."""
    nhwc = TRAINER.model_copy(update={"channels_last_cpu": True})
    losses = {}
    for label, trainer in (("nchw", TRAINER), ("nhwc", nhwc), ("nhwc_again", nhwc)):
        root = tmp_path / label
        (root / "fomm").mkdir(parents=True)
        shutil.copy(trained / "fomm" / "checkpoint.pt", root / "fomm" / "checkpoint.pt")
        run("train_a2fd", data_root, root, steps=3, trainer=trainer)
        history = load_checkpoint(root / "a2fd" / "checkpoint.pt")["history"]
        losses[label] = [h["loss/total"] for h in history]
    # rounding grows through the optimiser steps: 1.01e-4 apart at step 2 on an AVX-512 CPU
    assert losses["nhwc"] == pytest.approx(losses["nchw"], rel=1e-3)
    assert losses["nhwc"] == losses["nhwc_again"]


def test_a_recipe_in_epochs_trains_its_steps(data_root, trained, tmp_path):
    """run_stage lays the selected recipe over the section and turns its epochs into steps for
    the stage's clips (here 1 LRW clip x 2 repeats // batch 2 = 1 step per epoch)."""
    from eamm.train.run import run_stage

    models = tmp_path / "models"
    (models / "fomm").mkdir(parents=True)
    shutil.copy(trained / "fomm" / "checkpoint.pt", models / "fomm" / "checkpoint.pt")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["trainer"].update(num_workers=0, device="cpu")
    schedule = {"num_epochs": 3, "num_repeats": 2, "batch_size": 2, "epoch_milestones": [1]}
    params["recipes"]["quick"] = {"stages": {"train_a2fd": {**schedule, "clip_len": 8, "lr": 1e-3}}}
    params["recipe"] = "quick"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    run_stage("train_a2fd", str(path), str(data_root), str(models))
    state = load_checkpoint(models / "a2fd" / "checkpoint.pt")
    assert state["schedule"] == {
        "num_epochs": 3,
        "num_repeats": 2,
        "num_clips": 1,
        "steps": 3,
        "milestones": [1],
    }
    assert [h["lr"] for h in state["history"]] == pytest.approx([1e-3, 1e-4, 1e-4])
    assert state["params"]["recipe"] == "quick" and state["params"]["train_a2fd"]["steps"] == 3


def test_changed_settings_restart_instead_of_resuming(data_root, trained, tmp_path):
    root = tmp_path / "models"
    (root / "fomm").mkdir(parents=True)
    shutil.copy(trained / "fomm" / "checkpoint.pt", root / "fomm" / "checkpoint.pt")
    run("train_a2fd", data_root, root, steps=2)
    params = stage_params("train_a2fd", 2, lr=1e-3)
    stage, fingerprint = build_stage("train_a2fd", MODEL, params, TRAINER, data_root, root)
    settings = {"model": MODEL, "train_a2fd": params.model_dump(), "trainer": TRAINER.model_dump()}
    train_stage(stage, params, TRAINER, root / "a2fd", fingerprint, settings)
    history = load_checkpoint(root / "a2fd" / "checkpoint.pt")["history"]
    assert [h["step"] for h in history] == [1, 2]
    assert history[0]["lr"] == 1e-3


def test_retimed_manifest_resumes_and_changed_clips_restart(data_root, trained, tmp_path, capsys):
    data, root = tmp_path / "data", tmp_path / "models"
    shutil.copytree(data_root, data)
    (root / "fomm").mkdir(parents=True)
    shutil.copy(trained / "fomm" / "checkpoint.pt", root / "fomm" / "checkpoint.pt")
    run("train_a2fd", data, root, steps=2)
    manifest = data / "lrw" / "processed" / "manifest.parquet"
    rows = read_rows(manifest)
    # a preprocessing re-run that only re-stats touched sources and re-times clips (the
    # manifest keeps the content; the timings go to the run log)
    write_manifest([{**r, "source_mtime_ns": 1, "processing_seconds": 9.0} for r in rows], manifest)
    capsys.readouterr()
    run("train_a2fd", data, root, steps=3)
    assert "afresh" not in capsys.readouterr().out
    history = load_checkpoint(root / "a2fd" / "checkpoint.pt")["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
    # different clips (here: another code version wrote them) are other data
    write_manifest([{**r, "code_version": "0.0.0"} for r in rows], manifest)
    run("train_a2fd", data, root, steps=3)
    assert "starting train_a2fd afresh" in capsys.readouterr().out


# --- generation from the tiny checkpoints ---------------------------------------------------


def test_generate_writes_playable_videos_with_audio(trained, sample, tmp_path):
    from eamm.config import GenerateParams
    from eamm.generate import generate
    from eamm.media import probe

    out = tmp_path / "gen" / "talk.mp4"
    inputs = (sample["portrait"], sample["speech"], sample["raw"] / sample["mead"]["happy"])
    params = GenerateParams(seed=3)
    result = generate(*inputs, out, checkpoints=trained, params=params)
    assert result.num_frames == 176 and len(result.emotion_kp) == 4
    for path, width in ((result.emotion, 64), (result.neutral, 64), (result.compare, 192)):
        info = probe(path, count_frames=True)
        assert (info.video.width, info.video.height, info.video.fps) == (width, 64, 25)
        assert info.video.num_frames == 176
        assert abs(info.audio.duration_s - 7.04) < 0.05 and info.audio.sample_rate == 16000
    first = out.read_bytes()
    generate(*inputs, out, checkpoints=trained, params=params)
    assert out.read_bytes() == first  # seeded augmentation: same inputs, same video


def test_generate_notes_bf16_on_a_cpu_without_bf16(trained, sample, tmp_path, monkeypatch):
    """bf16 on a CPU that only emulates it (AVX2) is asked for and done, with one note saying
    it costs ~30x fp32; a CPU with bf16 instructions gets no note."""
    import eamm.generate as gen
    from eamm.config import GenerateParams
    from eamm.sample.voice import synth_speech

    speech = write_wav_s16(synth_speech(0.4, 16000, seed=1).samples, tmp_path / "short.wav")
    params = GenerateParams(precision="bf16", device="cpu")
    notes = {}
    for has_bf16 in (False, True):
        monkeypatch.setattr(gen, "cpu_has_bf16", lambda has=has_bf16: has)
        out = tmp_path / f"talk_{has_bf16}.mp4"
        result = gen.generate(sample["portrait"], speech, None, out, trained, params=params)
        assert result.neutral.is_file()
        notes[has_bf16] = [n for n in result.notes if "precision bf16" in n]
    assert len(notes[False]) == 1 and "30x slower than fp32" in notes[False][0]
    assert notes[True] == []


def test_generate_rejects_bad_inputs_with_one_line(trained, sample, tmp_path):
    import cv2
    import numpy as np

    from eamm.errors import EammError
    from eamm.generate import generate
    from eamm.preprocess.errors import NoFaceError

    photo, audio = sample["portrait"], sample["speech"]
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((128, 128, 3), 90, np.uint8))
    with pytest.raises(NoFaceError, match=r"blank\.png"):
        generate(blank, audio, None, tmp_path / "a.mp4", checkpoints=trained)
    silent = write_wav_s16(np.zeros(16000, np.float32), tmp_path / "silent.wav")
    with pytest.raises(EammError, match=r"silent\.wav: audio is silent"):
        generate(photo, silent, None, tmp_path / "b.mp4", checkpoints=trained)
    with pytest.raises(EammError, match="checkpoint does not exist"):
        generate(photo, audio, None, tmp_path / "c.mp4", checkpoints=tmp_path / "none")
    assert not list(tmp_path.glob("*.mp4"))


def test_stage_one_models_swap_only_the_audio_branch(trained, tmp_path):
    """The evaluation's ``stage1`` variant: stage 1's audio network with the same renderer and
    no stage 3; none without stage 2's checkpoint (``models`` then already is stage 1's)."""
    from eamm.generate import load_models, stage_one_models

    nets = load_models(trained, torch.device("cpu"))
    one = stage_one_models(trained, nets)
    assert one.generator is nets.generator and one.kp_detector is nets.kp_detector
    assert one.emotion is None and nets.emotion is not None
    stage_one = load_checkpoint(trained / "a2fd" / "checkpoint.pt")["models"]
    for net, name in ((one.audio_net, "audio_feature"), (one.audio_head, "kp_detector_a")):
        for key, value in net.state_dict().items():
            assert torch.equal(value, stage_one[name][key]), (name, key)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            one.audio_net.state_dict().values(), nets.audio_net.state_dict().values(), strict=True
        )
    )  # stage 2's two steps moved it
    partial = tmp_path / "models"
    for name in ("fomm", "a2fd"):
        shutil.copytree(trained / name, partial / name)
    assert stage_one_models(partial, load_models(partial, torch.device("cpu"))) is None


def test_evaluation_flow_writes_metrics_and_report(trained, data_root, tmp_path, prefect_api):
    from eamm.evaluate import VARIANTS
    from flows.evaluate import evaluate_flow

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(split="train", max_clips=2, max_frames=12)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "reports"
    metrics = evaluate_flow(str(params_path), str(data_root), str(trained), str(out))
    assert set(metrics) == {"mead", "lrw", "judges", "training"}
    table = {d: metrics[d] for d in ("mead", "lrw")}
    for dataset in table.values():
        assert set(dataset) == set(VARIANTS)
        assert dataset["ground_truth"]["psnr"] is None and 0 <= dataset["ground_truth"]["cpbd"] <= 1
        assert 0 < dataset["neutral"]["psnr"] < 100 and -1 <= dataset["emotion"]["ssim"] <= 1
        assert 0 < dataset["stage1"]["psnr"] < 100 and dataset["stage1"]["kp_motion"] > 0
        # the source frame repeated: its first frame is the source itself
        assert 0 < dataset["static_source"]["psnr"] < 100
        for row in dataset.values():  # the judges trained in `trained` score every row
            assert row["sync_conf"] >= 0 and row["sync_dist"] >= 0
            assert row["syncnet_conf"] is None  # no SyncNet weights configured
        # keypoint motion: only the audio branch and its no-motion baseline have one
        assert dataset["static_source"]["kp_motion"] > 0 and dataset["neutral"]["kp_motion"] > 0
        assert dataset["emotion"]["kp_motion"] is None
        # stage 3's residual: the generated variants only, with and without its displacement
        assert dataset["neutral"]["emotion_kp"] > 0 and dataset["emotion"]["emotion_kp"] > 0
        assert dataset["neutral"]["emotion_kp"] != dataset["emotion"]["emotion_kp"]
        for variant in ("ground_truth", "static_source", "reconstruction"):
            assert dataset[variant]["emotion_kp"] is None
        for variant in ("ground_truth", "static_source", "reconstruction", "neutral"):
            assert dataset[variant]["emotion_kp_from_neutral"] is None
            assert dataset[variant]["stage3_emotion_acc"] is None
    # the control reads the speaker's neutral clip and stage 3's classifier is scored against
    # the clip's label: MEAD only (LRW has no emotion labels); 2 clips: 0, 0.5 or 1
    assert table["mead"]["emotion"]["emotion_kp_from_neutral"] > 0
    assert table["mead"]["emotion"]["stage3_emotion_acc"] in (0.0, 0.5, 1.0)
    for key in ("emotion_kp_from_neutral", "stage3_emotion_acc"):
        assert table["lrw"]["emotion"][key] is None
    for variant in table["mead"].values():  # 2 clips: accuracy is 0, 0.5 or 1
        assert variant["emotion_acc"] in (0.0, 0.5, 1.0)
    assert all(row["emotion_acc"] is None for row in table["lrw"].values())
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["judges"]["sync_expert"]["chance"] == round(1 / 31, 4)
    assert metrics["training"]["fomm"]["steps"] > 0
    for name in ("evaluation.md", "metrics.png", "contact_sheet.png", "clip_scores.json"):
        assert (out / name).is_file()
    for name in ("judge_confusion.png", "judge_offsets.png"):  # the judges' figures, copied
        assert (out / name).is_file() and f"]({name})" in (out / "evaluation.md").read_text()
    report = (out / "evaluation.md").read_text()
    assert "| static_source |" in report and "| reconstruction |" in report
    assert "## What this run shows" in report and "## Training" in report


def test_evaluation_without_stages_2_and_3_says_what_it_scored(
    trained, data_root, tmp_path, prefect_api, capfd
):
    """A checkpoint folder without stage 2 or 3 is still evaluated; the report and stderr say
    that the audio network is stage 1's and that there is no ``emotion`` variant."""
    from flows.evaluate import evaluate_flow

    partial = tmp_path / "models"
    for name in ("fomm", "a2fd", "emotion_classifier", "sync_expert"):
        shutil.copytree(trained / name, partial / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(datasets=["mead"], split="train", max_clips=1, max_frames=8)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "reports"
    metrics = evaluate_flow(str(params_path), str(data_root), str(partial), str(out))
    assert "emotion" not in metrics["mead"] and metrics["mead"]["neutral"]["psnr"] > 0
    stage_two = partial / "a2fd_finetune" / "checkpoint.pt"
    stage_three = partial / "emotion" / "checkpoint.pt"
    report = (out / "evaluation.md").read_text()
    stderr = capfd.readouterr().err
    for said in (
        f"{stage_two} is missing: the generated variants use stage 1's audio network",
        f"{stage_three} is missing: no `emotion` variant; stage 3's relations are not measured",
    ):
        assert f"**Note**: {said}" in report and f"note: {said}" in stderr


def run_probe(probe: str, args: list) -> dict[str, dict[str, float]]:
    """``python scripts/demo_probes.py <probe> <args>`` as a user runs it: {row name: values}
    from its lines ``<name>: <json> (<n> clips)``."""
    import subprocess
    import sys

    script = ROOT / "scripts" / "demo_probes.py"
    done = subprocess.run(
        [sys.executable, script, probe, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return {
        name: json.loads(values.rsplit(" (", 1)[0])
        for name, values in (line.split(": ", 1) for line in done.stdout.splitlines())
    }


def test_stage1_probe_scores_what_the_evaluation_scores(trained, data_root, tmp_path):
    """``scripts/demo_probes.py stage1`` as a user runs it: one line per dataset with every row;
    its ``audio`` and ``no_motion`` rows are the evaluation's own ``kp_motion`` numbers."""
    from eamm.clips import load_clips
    from eamm.config import EvaluateParams, GenerateParams
    from eamm.evaluate import driving_rows, identity_source, keypoint_motion
    from eamm.generate import detect_keypoints, frames_to_tensor, load_models

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["device"] = "cpu"
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    args = ["--checkpoints", trained, "--params", params_path, "--data-root", data_root]
    args += ["--split", "train", "--clips", "2", "--audio-weight", "1.6", "--fit-clips", "2"]
    rows = {name.split()[0]: row for name, row in run_probe("stage1", args).items()}
    assert set(rows) == {"lrw", "mead"}
    names = {"no_motion", "audio", "own_source", "pose_held", "audio_zeroed", "pose_linear"}
    assert all(set(row) == names and min(row.values()) > 0 for row in rows.values())
    # fitted on the very clips it scores, the linear map does at least as well as no motion
    assert all(row["pose_linear"] <= row["no_motion"] + 0.01 for row in rows.values())

    gp = GenerateParams(**params["generate"]).model_copy(update={"audio_weight": 1.6})
    source_frame = EvaluateParams(**params["evaluate"]).resolved().source_frame
    nets = load_models(trained, torch.device("cpu"), gp)
    for dataset, row in rows.items():
        pool = load_clips(data_root / dataset / "processed" / "manifest.parquet", ("train",))
        motions = []
        for clip in pool[:2]:
            t = clip.num_frames
            frames = frames_to_tensor(clip.frames(list(range(t)), nets.image_size), "cpu")
            real = detect_keypoints(nets, frames, gp.batch_size)["value"]
            source = identity_source(clip, pool, source_frame).frames([0], nets.image_size)
            mfcc, pose = (torch.from_numpy(r).float() for r in driving_rows(clip, t))
            motions.append(
                keypoint_motion(nets, frames_to_tensor(source, "cpu"), mfcc, pose, real, gp)
            )
        for name, variant in (("audio", "neutral"), ("no_motion", "static_source")):
            expected = sum(m[variant] for m in motions) / len(motions)
            assert row[name] == pytest.approx(expected, abs=0.006), (dataset, name)


def test_teacher_probe_gives_nested_shares(trained, data_root):
    """``scripts/demo_probes.py teacher``: per dataset, the share of the keypoints' values and
    jacobians explained by the pose, the pose and mouth, the mouth; a map given more inputs
    explains no less (least squares on the same frames)."""
    args = ["--checkpoints", trained, "--data-root", data_root, "--split", "train", "--clips", 3]
    rows = run_probe("teacher", args)
    assert set(rows) == {f"{d} {k}" for d in ("lrw", "mead") for k in ("values", "jacobians")}
    for name, row in rows.items():
        assert set(row) == {"pose", "pose_mouth", "mouth"}, name
        assert all(-1e-3 <= v <= 1 for v in row.values()), (name, row)
        assert row["pose_mouth"] >= max(row["pose"], row["mouth"]) - 1e-3, (name, row)


def test_renderer_probe_gives_every_row(trained, data_root):
    """``scripts/demo_probes.py renderer`` as a user runs it: the five rows per dataset, each with
    its PSNR and landmark distances (NaN where no face is found on the tiny model's frames)."""
    args = ["--checkpoints", trained, "--data-root", data_root, "--split", "train"]
    rows = run_probe("renderer", args)
    names = ("fidelity", "static_source", "still_render", "reconstruction", "blurred_truth")
    assert set(rows) == {f"{d} {n}" for d in ("lrw", "mead") for n in names}
    for row in rows.values():
        # emotion_acc: MEAD rows, when the emotion judge is trained
        assert set(row) - {"emotion_acc"} == {"psnr", "m_lmd", "m_lmd_shape"}
        assert 0 < row["psnr"] < 100


def load_probes():
    """``scripts/demo_probes.py`` as a module, for its helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("probes", ROOT / "scripts" / "demo_probes.py")
    probes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probes)
    return probes


def test_landmark_warp_moves_the_face_with_its_landmarks():
    """The expression probe's ``landmark_warp``: unmoved landmarks give the source back, moved
    ones carry the pixels along, a frame without landmarks keeps the source."""
    probes = load_probes()
    source = np.zeros((64, 64, 3), np.uint8)
    source[28:36, 20:28] = 255  # a white square around landmark 0
    lm = np.random.default_rng(0).uniform(12, 52, (68, 2))
    lm[0] = (24, 32)
    shifted = lm.copy()
    shifted[0] += (8, 0)
    frames = probes.landmark_warp(source, lm, np.stack([lm, shifted, np.full_like(lm, np.nan)]))
    assert frames.shape == (3, 64, 64, 3)
    assert np.abs(frames[0].astype(int) - source).max() <= 1
    assert frames[0][32, 32].max() == 0 and frames[1][32, 32].min() > 200  # stretched along
    assert np.array_equal(frames[2], source)


def test_rig_probe_rerenders_the_sample_clips(trained, data_root):
    """``scripts/demo_probes.py rig`` on the sample's own clips: the three renders, each named
    by the judge."""
    args = ["--checkpoints", trained, "--data-root", data_root, "--split", "train", "--clips", 2]
    rows = run_probe("rig", args)
    assert set(rows) == {f"mead {n}" for n in ("as_generated", "cavity_unpainted", "no_jaw_drop")}
    assert all(row["emotion_acc"] in (0.0, 0.5, 1.0) for row in rows.values())


def test_expression_probe_moves_only_the_chosen_keypoints(trained, data_root):
    """``scripts/demo_probes.py expression``: the judge's share per drive on MEAD clips; its
    oracle moves exactly the chosen keypoints to the real frames' offsets from the audio's."""
    args = ["--checkpoints", trained, "--data-root", data_root, "--split", "train", "--clips", 2]
    rows = run_probe("expression", args)
    names = ("audio", "stage3_oracle", "all_oracle", "reconstruction", "landmark_warp")
    assert set(rows) == {f"mead {n}" for n in names}
    assert all(row["emotion_acc"] in (0.0, 0.5, 1.0) for row in rows.values())

    probes = load_probes()
    g = torch.Generator().manual_seed(0)
    relative, real, audio = (
        {
            "value": torch.rand(3, 10, 2, generator=g),
            "jacobian": torch.rand(3, 10, 2, 2, generator=g),
        }
        for _ in range(3)
    )
    moved = probes._moved(relative, real, audio, [1, 4])
    for key in ("value", "jacobian"):
        expected = relative[key].clone()
        expected[:, [1, 4]] += real[key][:, [1, 4]] - audio[key][:, [1, 4]]
        assert torch.equal(moved[key], expected)
    assert not torch.equal(relative["value"], moved["value"])  # a copy, the input kept


# 24 frames against 2048 features: singular covariances (a real run uses thousands of frames)
def fid_weights(folder: Path) -> Path:
    """pytorch-fid's network with random weights, saved under the released file's name."""
    from eamm.metrics.fid import FID_WEIGHTS_NAME, FidInceptionV3

    torch.manual_seed(0)
    network = FidInceptionV3()
    randomise_batch_norm(network, seed=1)
    calibrate_batch_norm(
        network, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    )
    weights = folder / FID_WEIGHTS_NAME
    torch.save(network.state_dict(), weights)
    return weights


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_fid_from_local_weights_scores_every_generated_variant(
    trained, data_root, tmp_path, prefect_api
):
    """``evaluate.fid_weights`` (here pytorch-fid's network with random weights, saved with the
    released file's keys) adds FID per variant against the real frames; without it there is no
    FID at all (the test above)."""
    from flows.evaluate import evaluate_flow

    weights = fid_weights(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(
        datasets=["mead"], split="train", max_clips=2, max_frames=12, fid_weights=str(weights)
    )
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "reports"
    mead = evaluate_flow(str(params_path), str(data_root), str(trained), str(out))["mead"]
    assert "fid" not in mead["ground_truth"]
    for variant in ("static_source", "reconstruction", "neutral", "emotion"):
        assert mead[variant]["fid"] is None or mead[variant]["fid"] >= 0, variant
    assert all(mead[v]["fid"] > 0 for v in ("static_source", "neutral", "emotion"))
    assert "fid (lower is better)" in (out / "evaluation.md").read_text()


def test_eat_protocol_evaluates_the_sample_end_to_end(
    trained, data_root, sample, tmp_path, prefect_api
):
    """``evaluate.protocol: eat`` runs offline through the real flow: dlib-68 points on
    dlib-aligned 128-px crops, the PC-AVS 224 sync crop, vshift 15, the neutral source; the
    report prints the protocol it ran (here with the sample's speaker and caps, said so)."""
    from flows.evaluate import evaluate_flow

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(
        protocol="eat", datasets=["mead"], split="train", max_clips=2, max_frames=12
    )
    params["evaluate"]["protocols"]["eat"]["mead_speakers"] = [sample["speaker"]]
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "reports"
    metrics = evaluate_flow(str(params_path), str(data_root), str(trained), str(out))
    mead = metrics["mead"]
    assert mead["ground_truth"]["clips"] == 2 and mead["emotion"]["clips"] == 2
    # dlib finds the sample's faces: the static source (the speaker's neutral clip's first
    # frame, so not a perfect first frame of the sad clip) is measured on dlib-aligned crops;
    # the test's few-step models render blurs where dlib may find no face (None, not 0)
    static = mead["static_source"]
    assert 0 < static["psnr"] < 100 and 0 < static["ssim"] <= 1 and static["m_lmd"] > 0
    for row in mead.values():
        assert row["sync_dist"] >= 0 and 0 <= row["cpbd"] <= 1
    report = (out / "evaluation.md").read_text()
    assert "Protocol **`eat`**" in report and "**Capped for a quick check**" in report
    for setting in ("| image_crop | dlib128 |", "| landmarker | dlib68 |", "| vshift | 15 |"):
        assert setting in report
    assert "| sync_crop | pcavs224 |" in report


@pytest.mark.fixtures
def test_eat_protocol_evaluates_a_mead_tree_built_from_real_clips(
    trained, fixtures_dir, tmp_path, prefect_api
):
    """``eamm evaluate`` under ``eat`` on real MEAD media: the fixture's M030 clip (a test
    speaker; 1080p, 30 fps, separate .m4a audio) in MEAD's layout, indexed and preprocessed by
    the real flows, then evaluated with dlib-68 on dlib-aligned crops, the neutral source (a
    neutral-labelled copy of the clip) and the PC-AVS sync crop."""
    from flows.evaluate import evaluate_flow
    from flows.index import index_flow
    from flows.preprocess import run_preprocess

    raw = tmp_path / "raw"
    source = fixtures_dir / "mead" / "M030"
    for rel in ("video/front/sad/level_3/001.mp4", "audio/sad/level_3/001.m4a"):
        (raw / "M030" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, raw / "M030" / rel)
    neutral = raw / "M030/video/front/neutral/level_1/001.mp4"
    neutral.parent.mkdir(parents=True)
    shutil.copyfile(source / "video/front/sad/level_3/001.mp4", neutral)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["mead"]["raw"] = str(raw)
    params["preprocess"]["crop_size"] = 64
    params["evaluate"].update(protocol="eat", datasets=["mead"], max_frames=20)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    data_root = tmp_path / "data"
    index = str(data_root / "mead" / "index.parquet")
    index_flow("mead", index, params_path=str(params_path))
    summary = run_preprocess(
        "mead",
        str(data_root / "mead" / "processed"),
        index_path=index,
        params_path=str(params_path),
        workers=1,
    )
    assert summary["processed"] == 2
    out = tmp_path / "reports"
    mead = evaluate_flow(str(params_path), str(data_root), str(trained), str(out))["mead"]
    assert mead["ground_truth"]["clips"] == 2
    assert 0 < mead["ground_truth"]["cpbd"] <= 1
    # the neutral clip's source is its own first frame, the sad clip's the neutral copy's: the
    # same pixels, so the static source matches the real first frame on dlib's crops
    static = mead["static_source"]
    assert 0 < static["psnr"] < 100 and 0 < static["ssim"] <= 1 and static["m_lmd"] >= 0
    report = (out / "evaluation.md").read_text()
    assert "Protocol **`eat`**" in report and "| landmarker | dlib68 |" in report


def test_two_process_ddp_run_on_cpu(data_root, trained, tmp_path):
    """torchrun with 2 gloo processes: the global batch is split, gradients averaged (both ranks
    end with the same weights), and only rank 0 writes the checkpoint and logs."""
    from eamm.train.run import launch_distributed

    models = tmp_path / "models"
    (models / "fomm").mkdir(parents=True)
    shutil.copy(trained / "fomm" / "checkpoint.pt", models / "fomm" / "checkpoint.pt")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["trainer"].update(processes=2, num_workers=0, device="cpu")
    params["train_a2fd"].update(steps=2, batch_size=2, clip_len=8, checkpoint_every=2, log_every=1)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    launch_distributed("train_a2fd", str(params_path), str(data_root), str(models), True, 2)
    state = load_checkpoint(models / "a2fd" / "checkpoint.pt")
    assert state["step"] == 2 and [h["step"] for h in state["history"]] == [1, 2]
    metrics = json.loads((models / "a2fd" / "metrics.json").read_text())
    assert metrics["ddp/max_weight_diff"] == 0.0  # both ranks end with identical weights
    assert sorted(p.name for p in (models / "a2fd").iterdir() if p.suffix == ".pt") == [
        "checkpoint.pt"
    ]


# --- damaged or missing data: one line before (or instead of) training on it -----------------


def _damaged_copy(data_root: Path, tmp_path: Path, member: str | None = None) -> Path:
    """A copy of the processed data; with ``member``, 64 bytes flipped in the middle of that
    output of every clip (what `eamm manifest validate` reports as damaged)."""
    copy = tmp_path / "data"
    shutil.copytree(data_root, copy)
    if member is None:
        return copy
    for manifest in copy.glob("*/processed/manifest.parquet"):
        for row in read_rows(manifest):
            at = list(row["output_files"]).index(member)
            offset = row["member_offsets"][at] + row["member_sizes"][at] // 2
            with open(manifest.parent / row["shard"], "r+b") as shard:
                shard.seek(offset)
                flipped = bytes(b ^ 0xFF for b in shard.read(64))
                shard.seek(offset)
                shard.write(flipped)
    return copy


@pytest.mark.parametrize("member", ["frames.mp4", "pose.npy"])
def test_training_refuses_a_damaged_output(data_root, trained, tmp_path, member):
    from eamm.clips import DamagedOutputError

    copy = _damaged_copy(data_root, tmp_path, member)
    stage = "train_fomm" if member == "frames.mp4" else "train_a2fd"
    models = tmp_path / "models"
    if stage == "train_a2fd":  # its upstream
        shutil.copytree(trained / STAGE_DIRS["train_fomm"], models / STAGE_DIRS["train_fomm"])
    with pytest.raises(DamagedOutputError, match=rf": {member} damaged .* in .*\.tar; `eamm man"):
        run(stage, copy, models, steps=2)


def test_training_names_a_missing_shard(data_root, tmp_path):
    copy = _damaged_copy(data_root, tmp_path)
    shard = next((copy / "mead" / "processed").glob("shards/**/*.tar"))
    shard.unlink()
    with pytest.raises(
        EammError, match=r"manifest\.parquet: 1 shard\(s\) missing \(.*\.tar; 2 clips"
    ):
        run("train_fomm", copy, tmp_path / "models", steps=2)


def test_a_listed_dataset_without_clips_is_an_error(data_root, tmp_path):
    import pyarrow.parquet as pq

    copy = _damaged_copy(data_root, tmp_path)
    manifest = copy / "mead" / "processed" / "manifest.parquet"
    pq.write_table(pq.read_table(manifest).slice(0, 0), manifest)
    with pytest.raises(
        EammError,
        match=r"mead/processed/manifest\.parquet: no ok clips .* drop it "
        r"from train_fomm\.datasets",
    ):
        run("train_fomm", copy, tmp_path / "models", steps=2)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_killed_evaluation_resumes_at_its_clip_with_the_straight_runs_report(
    trained, data_root, tmp_path, prefect_api
):
    """``eamm evaluate`` killed (SIGKILL) once its first clip is recorded: the next run reads
    the recorded clips back (its lines say so) instead of scoring them again and writes the
    report an uninterrupted run writes, byte for byte, FID included; the journal goes with the
    report."""
    import subprocess

    from eamm.evaluation_journal import journal_folder
    from tests.conftest import VENV_BIN, kill_group_when

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["evaluate"].update(
        datasets=["mead"],
        split="train",
        max_clips=2,
        max_frames=6,
        fid_weights=str(fid_weights(tmp_path)),
    )
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    # every run as a user runs it, the CLI in a process of its own (the float rounding of a
    # process whose torch threads an earlier test changed would differ in the last digits),
    # on this session's Prefect server: no temporary one to start
    from prefect.settings import PREFECT_API_URL

    cli = [str(VENV_BIN / "eamm"), "evaluate", "--params", str(params_path)]
    cli += ["--data-root", str(data_root), "--checkpoints", str(trained), "--out"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}

    def evaluate(out: Path) -> str:
        done = subprocess.run([*cli, str(out)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout + done.stderr

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    evaluate(straight)
    assert not (straight / ".journal").exists()
    rows = json.loads((straight / "clip_scores.json").read_text())
    clips = len({row["clip_id"] for row in rows})
    assert clips >= 2

    journal = journal_folder(resumed, "mead")
    run = subprocess.Popen(
        [*cli, str(resumed)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # a record counts once renamed into place (its staged file is hidden: .000000.npz.*)
    kill_group_when(run, lambda: bool(list(journal.glob("[0-9]*.npz"))))
    recorded = len(list(journal.glob("[0-9]*.npz")))
    assert 1 <= recorded < clips and not (resumed / "metrics.json").exists()

    log = evaluate(resumed)
    assert log.count("read back, scored by an earlier run") == recorded
    assert log.count("evaluate mead: clip ") == clips
    reports = sorted(p.name for p in straight.iterdir() if not p.name.startswith("."))
    assert "metrics.json" in reports and "contact_sheet.png" in reports
    for name in reports:
        assert (resumed / name).read_bytes() == (straight / name).read_bytes(), name
    assert not (resumed / ".journal").exists()


def test_a_damaged_or_foreign_clip_record_is_not_read_back(tmp_path):
    """A record cut short (a full disk before the rename cannot leave one, a copy can) or one of
    another clip is scored again; records of the same inputs stay, of other inputs go."""
    from eamm.evaluation_journal import ClipRecord, EvaluationJournal

    key = {"clips": ["a", "b"]}
    journal = EvaluationJournal(tmp_path / "mead", key)
    frame = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    row = {"dataset": "mead", "clip_id": "a", "emotion": "sad", "variant": "neutral"}
    scores = [row | {"scores": {"psnr": 20.125, "ssim": float("nan")}}]
    features = {"neutral": np.full((2, 4), 0.1)}
    journal.save(0, ClipRecord("a", scores, "sad", {"source": frame}, features))
    journal.save(1, ClipRecord("b", [], "sad"))
    back = EvaluationJournal(tmp_path / "mead", key).load(0, "a")
    assert back.scores[0]["scores"]["psnr"] == 20.125 and np.isnan(back.scores[0]["scores"]["ssim"])
    assert np.array_equal(back.stills["source"], frame) and back.group == "sad"
    assert np.array_equal(back.fid["neutral"], features["neutral"])
    assert journal.load(1, "another clip") is None  # the clip list moved under it
    path = tmp_path / "mead" / "000000.npz"
    path.write_bytes(path.read_bytes()[:100])
    assert journal.load(0, "a") is None and not path.exists()
    staged = tmp_path / "mead" / ".000001.npz.x1y2.partial.npz"  # a killed run's, half written
    staged.write_bytes(b"PK")
    assert EvaluationJournal(tmp_path / "mead", key).load(1, "b") is not None
    assert not staged.exists()
    assert EvaluationJournal(tmp_path / "mead", {"clips": ["c"]}).load(1, "b") is None


def test_records_made_under_other_numerics_are_not_read_back(tmp_path):
    """Another thread count (or CPU, or torch) rounds the last digits differently: a run resumed
    under it scores every clip afresh rather than mixing two roundings in one report."""
    import torch

    from eamm.evaluation_journal import ClipRecord, EvaluationJournal, numerics

    cpu = torch.device("cpu")
    EvaluationJournal(tmp_path, {"numerics": numerics(cpu)}).save(0, ClipRecord("a", [], "sad"))
    assert EvaluationJournal(tmp_path, {"numerics": numerics(cpu)}).load(0, "a") is not None
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert EvaluationJournal(tmp_path, {"numerics": numerics(cpu)}).load(0, "a") is None
    finally:
        torch.set_num_threads(threads)


def test_the_progress_line_names_the_clip_and_the_time_left():
    from eamm.progress import ProgressLine

    line = ProgressLine("evaluate mead")
    assert line(1, 4, "W009/a", None) == (
        "evaluate mead: clip 1/4 W009/a: read back, scored by an earlier run"
    )
    assert line(2, 4, "W009/b", 30.0) == "evaluate mead: clip 2/4 W009/b: 30.0 s; about 60 s left"
