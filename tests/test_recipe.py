"""EAMM's recipe as one switch (`recipe: eamm`): every number pinned against the reference
specification, epochs turned into steps, the recipe's loss settings, learning-rate milestones and
optimiser carry-over in the real loop, FOMM's augmentation, and the refusal to train a
non-demo profile without ImageNet VGG19 weights."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset

from eamm.checkpoint import load_checkpoint
from eamm.clips import Clip
from eamm.config import StageParams, TrainerParams
from eamm.errors import EammError
from eamm.media.encode import VideoWriter
from eamm.models.build import build_emotion_net, build_networks
from eamm.models.perceptual import (
    VGG19_IMAGENET_URL,
    VGG_STANDIN,
    Vgg19Features,
    find_vgg19_weights,
    imagenet_vgg19_cache,
)
from eamm.stages import EAMM_STAGES, STAGES_BY_NAME
from eamm.train.build import perceptual_vgg
from eamm.train.datasets import FommPairs
from eamm.train.loop import Stage, train_stage
from eamm.train.recipe import RecipesParams, in_steps, resolve_stage
from eamm.train.run import run_stage
from eamm.train.stages import audio_keypoints, emotion_losses, landmark_l1, mouth_l1
from tests.conftest import ROOT

REFERENCE = ROOT.parent / "shared" / "docs" / "eamm-reference.md"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
TRAINER = TrainerParams(num_workers=0, seed=0, device="cpu")
NUM = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"  # a number in the reference text (not its full stop)

# recipes.eamm, number by number (eamm-reference.md section in each comment). The doc test below
# reads the same numbers out of the reference text.
COMMON = {"num_repeats": 1, "num_epochs": 300, "epoch_milestones": [60, 90], "gamma": 0.1}  # 3.1
ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}  # 3.1: every optimiser
EXPECTED = {
    "train_fomm": {  # 3.0: FOMM vox-256
        "num_epochs": 100,
        "num_repeats": 75,
        "epoch_milestones": [60, 90],
        "gamma": 0.1,
        "batch_size": 40,
        **ADAM,
        "checkpoint_every": 1000,  # ours (FOMM: every 50 epochs); changes nothing learned
        "loss_weights": {
            "perceptual": [10.0] * 5,
            "equivariance_value": 10.0,
            "equivariance_jacobian": 10.0,
        },
        "hflip": True,
        "time_flip": True,
        "jitter": 0.1,
        "neutral_source": 0.0,  # ours (the demo's 0.5); FOMM: both frames of one video
    },
    "train_a2fd": {  # 3.1, 3.2
        **COMMON,
        "batch_size": 8,
        **ADAM,
        "checkpoint_every": 500,
        "clip_len": 16,
        "jitter": 0.1,
        "loss_weights": {"audio": 10.0, "heatmap": 100.0},
    },
    "finetune_a2fd": {  # 3.1, 3.3
        **COMMON,
        "batch_size": 6,
        **ADAM,
        "checkpoint_every": 500,
        "clip_len": 16,
        "jitter": 0.1,
        "loss_weights": {"audio": 10.0, "heatmap": 100.0, "perceptual": [0.1] * 5},
        "resume_optimizer": True,
    },
    "train_emotion": {  # 3.1, 3.4, 3.6
        **COMMON,
        "batch_size": 16,
        **ADAM,
        "checkpoint_every": 1000,
        "clip_len": 16,
        "rotation": 30.0,
        "num_emotion_kp": 4,
        "classify": True,
        "kp_reduction": "sum",
        "loss_weights": {"emo": 10.0, "classify": 1.0},
    },
}


def recipe_stages() -> dict[str, dict]:
    recipes = RecipesParams.model_validate(PARAMS["recipes"]).root
    return {
        name: params.model_dump(include=params.model_fields_set)
        for name, params in recipes["eamm"].stages.items()
    }


def write_params(tmp_path: Path, **changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


# --- the numbers ------------------------------------------------------------------------------


def test_eamm_recipe_holds_exactly_the_pinned_numbers():
    assert recipe_stages() == EXPECTED  # every key written in the recipe, and no other
    recipe = RecipesParams.model_validate(PARAMS["recipes"]).root["eamm"]
    assert recipe.model_profile == "reference"
    reference = PARAMS["model"]["profiles"]["reference"]
    assert reference["image_size"] == 256
    assert reference["perceptual_scales"] == [1, 0.5, 0.25, 0.125]  # 3.0 / 3.3: 4 scales
    assert set(EXPECTED) == set(EAMM_STAGES)  # the judges are not part of the recipe


def _section(text: str, number: str) -> str:
    match = re.search(rf"^### {re.escape(number)} .*?(?=^### |\Z)", text, re.M | re.S)
    assert match, f"reference section {number} not found"
    return " ".join(match.group(0).split())


def _find(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the reference text"
    return match.groups()


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"reference spec not found at {REFERENCE}")
def test_pinned_numbers_are_the_reference_specifications():
    text = REFERENCE.read_text()
    fomm, common = _section(text, "3.0"), _section(text, "3.1")
    s1, s2, s3, aug = (_section(text, n) for n in ("3.2", "3.3", "3.4", "3.6"))
    f = EXPECTED["train_fomm"]
    epochs, repeats = _find(r"(\d+) epochs x (\d+) repeats", fomm)
    assert (f["num_epochs"], f["num_repeats"]) == (int(epochs), int(repeats))
    lr, b1, b2 = _find(rf"Adam lr {NUM} betas \({NUM}, {NUM}\)", fomm)
    assert (f["lr"], f["betas"]) == (float(lr), (float(b1), float(b2)))
    m1, m2, gamma = _find(rf"milestones \[(\d+), (\d+)\] gamma {NUM}", fomm)
    assert (f["epoch_milestones"], f["gamma"]) == ([int(m1), int(m2)], float(gamma))
    assert f["batch_size"] == int(_find(r"batch (\d+)", fomm)[0])
    weight, layers, scales = _find(r"perceptual weights (\d+)x(\d+) on (\d+) scales", fomm)
    assert f["loss_weights"]["perceptual"] == [float(weight)] * int(layers)
    assert len(PARAMS["model"]["profiles"]["reference"]["perceptual_scales"]) == int(scales)
    value, jacobian = _find(r"equivariance value/jacobian weights (\d+)/(\d+)", fomm)
    lw = f["loss_weights"]
    assert (lw["equivariance_value"], lw["equivariance_jacobian"]) == (
        float(value),
        float(jacobian),
    )
    assert "h-flip + time-flip" in fomm and f["hflip"] and f["time_flip"]
    assert f["jitter"] == float(_find(rf"colour jitter {NUM}", fomm)[0])

    b1, b2, lr = _find(rf"Adam, betas \({NUM}, {NUM}\), no weight decay, lr {NUM}", common)
    pattern = rf"milestones \[(\d+), (\d+)\], gamma {NUM}; num_epochs (\d+); num_repeats (\d+)"
    m1, m2, gamma, epochs, repeats = _find(pattern, common)
    clip_len = int(_find(r"Clip length T = (\d+)", common)[0])
    every12, every3 = _find(r"every (\d+) steps \(stages 1, 2\) or (\d+) steps \(stage 3\)", common)
    batches = {
        name: int(_find(r"Batch size (\d+)", section)[0])
        for name, section in (("train_a2fd", s1), ("finetune_a2fd", s2), ("train_emotion", s3))
    }
    every = {"train_a2fd": every12, "finetune_a2fd": every12, "train_emotion": every3}
    for name, batch in batches.items():
        stage = EXPECTED[name]
        assert stage["num_epochs"] == int(epochs) and stage["num_repeats"] == int(repeats)
        assert stage["epoch_milestones"] == [int(m1), int(m2)] and stage["gamma"] == float(gamma)
        assert (stage["lr"], stage["betas"]) == (float(lr), (float(b1), float(b2)))
        assert stage["batch_size"] == batch and stage["clip_len"] == clip_len
        assert stage["checkpoint_every"] == int(every[name])

    audio = float(_find(r"weight `audio` = (\d+)", s1)[0])
    heatmap = _find(r"L_heatmap = (\d+) \* (\d+) \*", s1)
    jitter = float(_find(rf"brightness/contrast/saturation/hue {NUM}", s1)[0])
    assert float(heatmap[0]) == audio and "same weights" in s2
    for name in ("train_a2fd", "finetune_a2fd"):
        stage = EXPECTED[name]
        assert stage["loss_weights"]["audio"] == audio
        assert stage["loss_weights"]["heatmap"] == float(heatmap[1])
        assert stage["jitter"] == jitter == float(_find(rf"stages 1-2: jitter {NUM} only", aug)[0])
    perceptual = float(_find(rf"sum_{{l=1..5}} {NUM} \*", s2)[0])
    assert EXPECTED["finetune_a2fd"]["loss_weights"]["perceptual"] == [perceptual] * 5
    assert "restored from the stage-1 checkpoint incl. optimiser state" in s2
    assert EXPECTED["finetune_a2fd"]["resume_optimizer"]

    emotion = EXPECTED["train_emotion"]
    assert emotion["loss_weights"]["emo"] == float(_find(r"`loss_weights\.emo: (\d+)`", s3)[0])
    assert emotion["loss_weights"]["classify"] == float(_find(r"\(weight (\d+);", s3)[0])
    pairs = _find(r"Keypoint pairs \(teacher index -> displacement row\): ([\d\->, ]+)\.", s3)[0]
    assert emotion["num_emotion_kp"] == len(pairs.split(","))
    assert "sum_t sum_pairs" in s3 and emotion["kp_reduction"] == "sum"
    assert emotion["rotation"] == float(
        _find(r"Stage 3 config: MouthCrop \+ flip \+ rotation (\d+)", aug)[0]
    )


# --- recipe resolution ------------------------------------------------------------------------


def test_epochs_become_steps_for_the_clips_in_the_manifest():
    params = StageParams(num_epochs=100, num_repeats=75, batch_size=40, epoch_milestones=[60, 90])
    steps = in_steps(params, num_clips=1000)  # 75 x 1000 // 40 = 1875 steps per epoch
    assert steps.steps == 187_500 and steps.milestones == [112_500, 168_750]
    assert steps.num_epochs is None and steps.epoch_milestones == []
    # drop_last: 8 clips in batches of 6 make one step per epoch
    stage2 = in_steps(StageParams(num_epochs=300, batch_size=6, epoch_milestones=[60, 90]), 8)
    assert (stage2.steps, stage2.milestones) == (300, [60, 90])
    plain = StageParams(steps=30, batch_size=4)
    assert in_steps(plain, 3) is plain
    with pytest.raises(EammError, match="make no full batch of 16"):
        in_steps(StageParams(num_epochs=300, batch_size=16), 15)
    with pytest.raises(ValueError, match="either steps or num_epochs"):
        StageParams(steps=10, num_epochs=3, batch_size=2)


def test_recipe_eamm_lays_the_recipe_over_the_stage_sections(tmp_path):
    path = write_params(tmp_path, recipe="eamm")
    fomm = resolve_stage(path, "train_fomm")
    assert fomm.recipe == "eamm" and fomm.model["profile"] == "reference"
    assert fomm.params.steps is None and fomm.params.num_epochs == 100
    assert fomm.params.datasets == ["mead", "lrw"]  # not in the recipe: the section's
    finetune = resolve_stage(path, "finetune_a2fd").params
    assert finetune.loss_weights["perceptual"] == [0.1] * 5 and finetune.batch_size == 6
    assert finetune.milestones == [] and finetune.epoch_milestones == [60, 90]
    emotion = resolve_stage(path, "train_emotion").params
    assert emotion.kp_reduction == "sum" and emotion.batch_size == 16
    judge = resolve_stage(path, "train_sync_expert")  # ours: untouched by the recipe
    assert judge.recipe is None and judge.model["profile"] == PARAMS["model"]["profile"]
    assert judge.params.model_dump() == StageParams(**PARAMS["train_sync_expert"]).model_dump()

    demo = resolve_stage(write_params(tmp_path, recipe="demo"), "finetune_a2fd")
    assert demo.model == PARAMS["model"]
    assert demo.params == StageParams(**PARAMS["finetune_a2fd"])
    # the demo's pixel term in place of the VGG19 (README); EAMM's weights under recipe: eamm
    assert demo.params.loss_weights["perceptual"] == [0] * 5 and demo.params.loss_weights["pixel"]
    assert "pixel" not in finetune.loss_weights
    with pytest.raises(EammError, match="recipe 'eam' is not in recipes"):
        resolve_stage(write_params(tmp_path, recipe="eam"), "train_fomm")


def test_a_recipe_length_replaces_the_sections_milestones(tmp_path):
    """A recipe stage given ``steps`` (train N steps under EAMM's recipe) kept the demo
    section's ``milestones: [480]``: the rate cut tenfold at step 480 without a word."""
    recipes = json.loads(json.dumps(PARAMS["recipes"]))
    stage = recipes["eamm"]["stages"]["train_a2fd"]
    for key in ("num_epochs", "num_repeats", "epoch_milestones"):
        stage.pop(key)
    stage["steps"] = 6000
    assert PARAMS["train_a2fd"]["milestones"]  # the demo's, which stayed
    params = resolve_stage(write_params(tmp_path, recipe="eamm", recipes=recipes), "train_a2fd")
    assert (params.params.steps, params.params.milestones, params.params.lr) == (6000, [], 2e-4)
    stage["milestones"] = [4000]
    params = resolve_stage(write_params(tmp_path, recipe="eamm", recipes=recipes), "train_a2fd")
    assert params.params.milestones == [4000]


def test_the_plan_is_said_before_the_first_step(tmp_path):
    """Under a recipe, a stage section's edits were overridden without a word (``-S
    train_fomm.steps=2`` started 24,000 steps at batch 40), the epochs came out as steps only
    in the checkpoint, and milestones past the end never cut the rate."""
    from eamm.train.recipe import in_steps, plan_line

    demo = resolve_stage(write_params(tmp_path, recipe="demo"), "train_a2fd")
    line = plan_line("train_a2fd", demo, demo.params, 40)
    p = demo.params
    assert line == f"train_a2fd: {p.steps} steps at batch {p.batch_size}, lr {p.lr:g}, rate " + (
        f"x{p.gamma:g} at steps {p.milestones}"
    )
    recipes = json.loads(json.dumps(PARAMS["recipes"]))
    recipes["eamm"]["stages"]["train_a2fd"]["num_epochs"] = 20  # the README's example
    eamm = resolve_stage(write_params(tmp_path, recipe="eamm", recipes=recipes), "train_a2fd")
    line = plan_line("train_a2fd", eamm, in_steps(eamm.params, 40), 40)
    assert line.startswith(
        "train_a2fd: 100 steps at batch 8 (20 epochs x 1 repeats of 40 clips), lr 0.0002, "
        "rate x0.1 at steps [300, 450] ([300, 450] at or past the last step: never reached); "
        "recipe eamm sets batch_size, betas, "
    )
    assert line.endswith(
        "over the train_a2fd section (edit recipes.eamm.stages.train_a2fd to change them)"
    )


def test_every_eamm_training_stage_reads_the_recipe_params():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in EAMM_STAGES:
        assert {"recipe", "recipes"} <= set(stages[name]["params"]), name
    for judge in ("train_emotion_classifier", "train_sync_expert"):
        assert "recipes" not in stages[judge]["params"]


# --- stage 3: keypoint loss summed over the emotion keypoints ---------------------------------


def test_emotion_keypoint_loss_sums_over_the_emotion_keypoints_as_eamm():
    torch.manual_seed(0)
    sizes = PARAMS["model"]["profiles"]["tiny"]
    nets = build_networks(sizes)
    emotion_kp = [1, 4, 6, 8]
    emotion = build_emotion_net(sizes, len(emotion_kp))
    for net in [*nets.values(), emotion]:
        net.eval()
    b, t, s = 2, 2, sizes["image_size"]
    batch = {
        "example_image": torch.rand(b, 3, s, s),
        "driving": torch.rand(b, t, 3, s, s),
        "transformed_driving": torch.rand(b, t, 3, s, s),
        "driving_audio": torch.randn(b, t, 28, 12),
        "driving_pose": torch.randn(b, t, 6),
        "emotion": torch.tensor([0, 4]),
    }
    args = (nets["kp_detector"], nets["audio_feature"], nets["kp_detector_a"], emotion, emotion_kp)
    weights = {"emo": 10, "classify": 1}
    with torch.no_grad():
        summed, _ = emotion_losses(*args, weights, True, "sum")(batch, 0)
        mean, _ = emotion_losses(*args, weights, True, "mean")(batch, 0)
        # EAMM (reference 3.4): (1/T) sum_t sum_pairs 10 * mean over batch and coordinates
        target = nets["kp_detector"](batch["driving"].flatten(0, 1))
        audio = audio_keypoints(nets["audio_feature"], nets["kp_detector_a"], batch)
        disp = emotion(
            batch["transformed_driving"].flatten(0, 1), audio["value"], audio["jacobian"]
        )
    residual = target["value"][:, emotion_kp] - audio["value"][:, emotion_kp] - disp["value"]
    residual = residual.view(b, t, len(emotion_kp), 2)
    eamm = (
        sum(10 * residual[:, f, j].abs().mean() for f in range(t) for j in range(len(emotion_kp)))
        / t
    )
    assert summed["value"].item() == pytest.approx(eamm.item(), rel=1e-5)
    for key in ("value", "jacobian"):
        assert summed[key].item() == pytest.approx(len(emotion_kp) * mean[key].item(), rel=1e-5)
    assert summed["classify"].item() == pytest.approx(mean["classify"].item())


# --- the loop: milestones, optimiser carry-over, the recorded VGG ------------------------------


class Ones(Dataset):
    """Items are (index, seed) pairs from the loop's sampler: a seeded random input."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        return {"x": torch.from_numpy(np.random.default_rng(item[1]).random(3, dtype=np.float32))}


def toy_stage(net: torch.nn.Module, **kwargs) -> Stage:
    def loss_fn(batch: dict, step: int):
        return {"mse": ((net(batch["x"]) - 1) ** 2).mean()}, None

    return Stage("toy", {"net": net}, {}, {"net": ["net"]}, Ones(), loss_fn, **kwargs)


def train_toy(stage: Stage, params: StageParams, out: Path) -> dict:
    settings = {"toy": params.model_dump(mode="json")}
    return train_stage(stage, params, TRAINER, out, "data", settings)


def test_epoch_milestones_decay_the_learning_rate_in_the_loop(tmp_path):
    params = StageParams(
        num_epochs=3, batch_size=2, epoch_milestones=[1, 2], gamma=0.1, lr=1e-2, log_every=1
    )
    params = in_steps(params, num_clips=4)  # 2 steps per epoch
    assert (params.steps, params.milestones) == (6, [2, 4])
    torch.manual_seed(0)
    train_toy(toy_stage(torch.nn.Linear(3, 1)), params, tmp_path / "toy")
    history = load_checkpoint(tmp_path / "toy" / "checkpoint.pt")["history"]
    lrs = [h["lr"] for h in history]  # the rate each step used
    assert lrs == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4])


def test_a_fresh_stage_continues_the_upstream_optimiser_with_its_own_rate(tmp_path):
    torch.manual_seed(0)
    first = torch.nn.Linear(3, 1)
    train_toy(toy_stage(first), StageParams(steps=3, batch_size=2, lr=1e-2), tmp_path / "a")
    upstream = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    second = torch.nn.Linear(3, 1)
    second.load_state_dict(upstream["models"]["net"])
    carried = toy_stage(second, initial_optimizers={"net": upstream["optimizers"]["net"]})
    train_toy(carried, StageParams(steps=2, batch_size=2, lr=5e-3), tmp_path / "b")
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    adam = state["optimizers"]["net"]
    assert all(int(s["step"]) == 5 for s in adam["state"].values())  # 3 upstream + 2 here
    assert adam["param_groups"][0]["lr"] == 5e-3  # this stage's rate, not the upstream's
    assert [h["lr"] for h in state["history"]] == [5e-3, 5e-3]
    fresh = torch.nn.Linear(3, 1)  # the same start without the carried moments ends elsewhere
    fresh.load_state_dict(upstream["models"]["net"])
    train_toy(toy_stage(fresh), StageParams(steps=2, batch_size=2, lr=5e-3), tmp_path / "c")
    assert not torch.allclose(second.weight, fresh.weight)


def test_the_perceptual_vgg_source_is_recorded(tmp_path):
    stage = toy_stage(torch.nn.Linear(3, 1), extra={"perceptual_vgg": VGG_STANDIN})
    metrics = train_toy(stage, StageParams(steps=1, batch_size=2), tmp_path / "toy")
    assert metrics["perceptual_vgg"] == VGG_STANDIN
    written = json.loads((tmp_path / "toy" / "metrics.json").read_text())
    assert written["perceptual_vgg"] == VGG_STANDIN
    assert load_checkpoint(tmp_path / "toy" / "checkpoint.pt")["perceptual_vgg"] == VGG_STANDIN


# --- no silent stand-in VGG --------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and a download that fails as on a machine without internet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    attempts = []

    def no_network(url, dst, hash_prefix=None, progress=True):
        attempts.append((url, dst, hash_prefix))
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


def test_eamm_recipe_refuses_to_start_without_imagenet_vgg(offline, tmp_path):
    cache = imagenet_vgg19_cache()
    assert cache == tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    params = write_params(tmp_path, recipe="eamm")
    start = time.monotonic()
    # no data at all under data_root: the refusal comes before any of it is read
    with pytest.raises(EammError) as err:
        run_stage("train_fomm", str(params), str(tmp_path / "no_data"), str(tmp_path / "models"))
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message and str(cache) in message and VGG19_IMAGENET_URL in message
    assert "model.perceptual.vgg_weights" in message and "Name or service not known" in message
    assert offline == [(VGG19_IMAGENET_URL, str(cache), "dcbb9e9d")]
    assert not (tmp_path / "models").exists()


def test_reference_profile_refuses_and_only_demo_profiles_get_a_stand_in(offline):
    model = {**PARAMS["model"], "profile": "reference"}
    with pytest.raises(EammError, match="no VGG19 ImageNet weights"):
        perceptual_vgg(model)
    tiny = {**PARAMS["model"], "profile": "tiny"}
    assert "tiny" in PARAMS["model"]["perceptual"]["standin_profiles"]
    assert perceptual_vgg(tiny) == (None, VGG_STANDIN)
    assert len(offline) == 1  # the stand-in never tries the network


def test_imagenet_weights_come_from_torch_hubs_cache_or_a_local_file(
    offline, tmp_path, monkeypatch
):
    weights = Vgg19Features().state_dict()
    cache = imagenet_vgg19_cache()
    cache.parent.mkdir(parents=True)
    torch.save(weights, cache)
    path, source = find_vgg19_weights(None, allow_standin=True)  # found: no stand-in
    assert path == cache and "IMAGENET1K_V1" in source
    assert Vgg19Features.from_weights(path).pretrained
    assert source.endswith(": not torchvision's ImageNet file")  # random weights, by hand
    local = tmp_path / "my_vgg.pth"
    torch.save(weights, local)
    sha = hashlib.sha256(local.read_bytes()).hexdigest()[:8]
    local_source = (  # was "ImageNet VGG19 from my_vgg.pth ...", for any file of VGG19's shapes
        f"VGG19 from my_vgg.pth (model.perceptual.vgg_weights), sha256 {sha}: not "
        "torchvision's ImageNet file"
    )
    assert find_vgg19_weights(str(local), False) == (local, local_source)
    monkeypatch.setattr("eamm.models.perceptual.VGG19_SHA256_PREFIX", sha)  # as if it were
    imagenet = "ImageNet VGG19 from my_vgg.pth (model.perceptual.vgg_weights)"
    assert find_vgg19_weights(str(local), False) == (local, imagenet)
    with pytest.raises(EammError, match=r"missing\.pth: model\.perceptual\.vgg_weights does not"):
        find_vgg19_weights(str(tmp_path / "missing.pth"), True)
    assert offline == []


def test_a_missing_cache_is_filled_by_one_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(Vgg19Features().state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path, _ = find_vgg19_weights(None, allow_standin=False)
    assert path == imagenet_vgg19_cache() and path.is_file()
    find_vgg19_weights(None, allow_standin=False)
    assert calls == [(VGG19_IMAGENET_URL, "dcbb9e9d")]  # once: then it is in the cache


def test_the_weights_url_is_torchvisions():
    try:
        from torchvision.models import VGG19_Weights
    except Exception as err:  # absent, or a build for another torch
        pytest.skip(f"torchvision not importable here ({type(err).__name__})")
    assert VGG19_Weights.IMAGENET1K_V1.url == VGG19_IMAGENET_URL


# --- FOMM vox-256's augmentation -------------------------------------------------------------


@pytest.fixture(scope="module")
def striped_clip(tmp_path_factory) -> Clip:
    """8 frames of 32x32: frame i is grey with a light column at x = 2i (mirrored: 31 - 2i)."""
    folder = tmp_path_factory.mktemp("clip") / "clip"
    folder.mkdir()
    with VideoWriter(folder / "frames.mp4", 32, 32, 25, crf=0) as writer:
        for i in range(8):
            frame = np.full((32, 32, 3), 60, np.uint8)
            frame[:, 2 * i] = 200
            writer.write(frame)
    return Clip.from_folder(folder, 8, "M030", "neutral", "mead")


def _identify(image: torch.Tensor) -> tuple[int, bool]:
    """(frame index, mirrored) of a striped frame."""
    column = int(image.mean(dim=(0, 1)).argmax())
    return (column // 2, False) if column <= 14 else ((31 - column) // 2, True)


def test_fomm_pairs_apply_vox256_flips_and_jitter(striped_clip):
    plain = FommPairs([striped_clip], 32, hflip=False, time_flip=False, jitter=0.0)
    vox = FommPairs([striped_clip], 32, hflip=True, time_flip=True, jitter=0.0)
    jittered = FommPairs([striped_clip], 32, hflip=True, time_flip=True, jitter=0.1)
    reversed_, mirrored = 0, 0
    for seed in range(40):
        src, drv = (_identify(plain[(0, seed)][k]) for k in ("source", "driving"))
        assert src[0] <= drv[0] and not src[1] and not drv[1]  # FOMM: sorted frame indices
        item = vox[(0, seed)]
        (s, s_flip), (d, d_flip) = _identify(item["source"]), _identify(item["driving"])
        assert s_flip == d_flip  # one mirror for the pair
        reversed_ += s > d
        mirrored += s_flip
        other = jittered[(0, seed)]  # same draws, colours changed
        assert [_identify(other[k]) for k in ("source", "driving")] == [(s, s_flip), (d, d_flip)]
        assert not torch.equal(other["source"], item["source"])
    assert 5 <= reversed_ <= 30 and 5 <= mirrored <= 35


def _plain_clip(folder: Path, speaker: str, emotion: str) -> Clip:
    """8 frames of 32x32, all one grey with no column: no striped frame."""
    folder.mkdir()
    with VideoWriter(folder / "frames.mp4", 32, 32, 25, crf=0) as writer:
        for _ in range(8):
            writer.write(np.full((32, 32, 3), 120, np.uint8))
    return Clip.from_folder(folder, 8, speaker, emotion, "mead")


def test_fomm_pairs_take_the_source_from_the_speakers_neutral_clip(striped_clip, tmp_path):
    """``neutral_source`` (ours): an expressive clip's source frame comes from a neutral clip
    of the same speaker (the striped one), the driving frame from the clip itself; a clip with
    no other neutral clip of its speaker keeps FOMM's pairs; at 0 every draw is FOMM's."""
    happy = _plain_clip(tmp_path / "happy", "M030", "happy")
    stranger = _plain_clip(tmp_path / "stranger", "W009", "sad")
    clips = [happy, striped_clip, stranger]
    fomm = FommPairs(clips, 32, hflip=False, time_flip=False, jitter=0.0)
    unset = FommPairs(clips, 32, hflip=False, time_flip=False, jitter=0.0, neutral_source=0.0)
    always = FommPairs(clips, 32, hflip=False, time_flip=False, jitter=0.0, neutral_source=1.0)
    half = FommPairs(clips, 32, hflip=False, time_flip=False, jitter=0.0, neutral_source=0.5)

    def striped(image: torch.Tensor) -> bool:
        return bool(image.mean(dim=(0, 1)).max() - image.mean(dim=(0, 1)).min() > 0.3)

    crossed = 0
    for seed in range(40):
        for index in range(3):
            for key in ("source", "driving"):
                assert torch.equal(unset[(index, seed)][key], fomm[(index, seed)][key])
        item = always[(0, seed)]
        assert striped(item["source"]) and not striped(item["driving"])
        for index in (1, 2):  # the neutral clip itself, a speaker without a neutral clip
            for key in ("source", "driving"):
                assert torch.equal(always[(index, seed)][key], fomm[(index, seed)][key])
        crossed += striped(half[(0, seed)]["source"])
    assert 8 <= crossed <= 32


@pytest.fixture(scope="module")
def mouthed_clip(striped_clip, tmp_path_factory) -> Clip:
    """The striped clip with landmarks: frame i's mouth points span x 2i..2i+2, y 20..24."""
    folder = tmp_path_factory.mktemp("mouthed") / "clip"
    folder.mkdir()
    (folder / "frames.mp4").write_bytes(Path(striped_clip.files["frames.mp4"]).read_bytes())
    landmarks = np.full((8, 68, 2), 10.0, np.float32)
    for i in range(8):
        landmarks[i, 48:68, 0] = np.linspace(2 * i, 2 * i + 2, 20)
        landmarks[i, 48:68, 1] = np.linspace(20, 24, 20)
    landmarks[7] = np.nan  # no face found in the last frame: no mouth to weigh
    np.save(folder / "landmarks.npy", landmarks)
    return Clip.from_folder(folder, 8, "M030", "neutral", "mead")


def test_fomm_pairs_mouth_mask_follows_the_driving_frame(mouthed_clip):
    plain = FommPairs([mouthed_clip], 32, jitter=0.1)
    mouthed = FommPairs([mouthed_clip], 32, jitter=0.1, mouth=True)
    seen = set()
    for seed in range(40):
        item, other = mouthed[(0, seed)], plain[(0, seed)]
        for key in ("source", "driving"):  # the mask changes no random draw
            assert torch.equal(item[key], other[key])
        assert "mouth" not in other
        frame, mirrored = _identify(item["driving"])
        mask = item["mouth"]
        assert mask.shape == (1, 32, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}
        if frame == 7:
            assert mask.sum() == 0
            continue
        columns = mask[0].amax(dim=0).nonzero().ravel().tolist()
        rows = mask[0].amax(dim=1).nonzero().ravel().tolist()
        # box 2i-0.5..2i+2.5 (pad: a quarter of the mouth's width), on pixel bounds, mirrored
        expected = [c for c in range(2 * frame - 1, 2 * frame + 4) if c >= 0]
        assert columns == (sorted(31 - c for c in expected) if mirrored else expected)
        assert rows == list(range(19, 26))
        seen.add(mirrored)
    assert seen == {False, True}
    small = FommPairs([mouthed_clip], 16, mouth=True)[(0, 3)]["mouth"]  # landmarks halved
    assert small.shape == (1, 16, 16)
    assert small[0].amax(dim=1).nonzero().ravel().tolist() == list(range(9, 14))


def test_fomm_pairs_mouth_mask_of_a_time_flipped_neutral_source_is_its_own(mouthed_clip, tmp_path):
    """With ``neutral_source`` the source frame is a neutral clip's; a time flip makes it the
    driving frame, whose mask was the expressive clip's mouth box (IoU 0.3-0.8 in the
    sample's MEAD pairs, a quarter of them)."""
    folder = tmp_path / "neutral"
    folder.mkdir()
    with VideoWriter(folder / "frames.mp4", 32, 32, 25, crf=0) as writer:
        for _ in range(8):
            writer.write(np.full((32, 32, 3), 120, np.uint8))
    landmarks = np.full((8, 68, 2), 10.0, np.float32)
    landmarks[:, 48:68, 0] = np.linspace(10, 12, 20)
    landmarks[:, 48:68, 1] = np.linspace(4, 8, 20)  # the neutral mouth: rows 3..9
    np.save(folder / "landmarks.npy", landmarks)
    neutral = Clip.from_folder(folder, 8, "M030", "neutral", "mead")
    happy = Clip.from_folder(Path(mouthed_clip.files["frames.mp4"]).parent, 8, "M030", "happy")
    pairs = FommPairs(
        [happy, neutral], 32, hflip=False, time_flip=True, jitter=0.0, mouth=True, neutral_source=1
    )
    flipped = 0
    for seed in range(20):
        item = pairs[(0, seed)]
        rows = item["mouth"][0].amax(dim=1).nonzero().ravel().tolist()
        if item["driving"].std() < 0.01:  # the plain neutral frame, time-flipped into place
            assert rows == list(range(3, 10)), seed
            flipped += 1
        elif rows:  # the happy clip's own frame (none in its faceless last frame)
            assert rows == list(range(19, 26)), seed
    assert 4 <= flipped <= 16


def test_fomm_pairs_landmark_targets_follow_both_frames(mouthed_clip):
    plain = FommPairs([mouthed_clip], 32, jitter=0.1)
    marked = FommPairs([mouthed_clip], 32, jitter=0.1, landmarks=True)
    raw = mouthed_clip.array("landmarks.npy")[:, list(FommPairs.LANDMARK_KEYPOINTS)]
    seen = set()
    for seed in range(40):
        item, other = marked[(0, seed)], plain[(0, seed)]
        for key in ("source", "driving"):  # the targets change no random draw
            assert torch.equal(item[key], other[key])
        assert "landmarks" not in other and item["landmarks"].shape == (2, 10, 2)
        for row, key in enumerate(("source", "driving")):
            frame, mirrored = _identify(item[key])
            expected = 2 * raw[frame] / 31 - 1  # stored 32 px wide: pixel 0 -> -1, 31 -> 1
            if mirrored:  # x negated, left and right mouth corners (and brows) trade places
                expected = expected[list(FommPairs.MIRRORED)] * np.float32([-1, 1])
            np.testing.assert_allclose(item["landmarks"][row].numpy(), expected, atol=1e-6)
            seen.add(mirrored)
    assert seen == {False, True}
    # left corner (48) at x 2i, right corner (54) at 2i + 12/19: mirrored, the right comes first
    assert FommPairs.MIRRORED[:2] == (1, 0)


def test_landmark_l1_skips_frames_without_a_face():
    keypoints = torch.zeros(2, 10, 2)
    targets = torch.full((2, 10, 2), 0.5)
    targets[1] = float("nan")
    assert landmark_l1(keypoints, targets).item() == pytest.approx(0.5)
    assert landmark_l1(keypoints, torch.full_like(targets, float("nan"))).item() == 0


def test_mouth_l1_averages_over_the_mouth_only():
    real = torch.zeros(2, 3, 8, 8)
    prediction = real.clone()
    prediction[:, :, :4] = 1.0  # wrong everywhere in the top half
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 6:, 2:6] = 1.0  # the mouth box, in the right bottom half
    assert mouth_l1(prediction, real, mask) == 0
    prediction[:, :, 6:, 2:4] = 0.5  # half the mouth half-wrong
    assert mouth_l1(prediction, real, mask).item() == pytest.approx(0.25)
    assert mouth_l1(prediction, real, torch.zeros_like(mask)) == 0  # no face: no term


def test_frame_cache_gives_the_same_items_and_respects_its_budget(striped_clip):
    plain = FommPairs([striped_clip], 32)
    cached = FommPairs([striped_clip], 32)
    cached.cache_frames(2**20)
    for seed in range(6):
        for key in ("source", "driving"):
            assert torch.equal(plain[(0, seed)][key], cached[(0, seed)][key])
    assert cached._cache[striped_clip.clip_id].shape == (8, 32, 32, 3)
    tight = FommPairs([striped_clip], 32)
    tight.cache_frames(8 * 32 * 32 * 3 - 1)  # one byte short of the clip: decode per item
    tight[(0, 0)]
    assert not tight._cache


def test_a_setting_another_stage_reads_is_refused_naming_who_reads_it(tmp_path):
    """`hflip` in stage 1's section trained the same weights as without it and was recorded in
    the checkpoint as if applied; now one line names the key and the stage that reads it."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train_a2fd"]["hflip"] = True
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(EammError) as err:
        resolve_stage(path, "train_a2fd")
    assert str(err.value) == (
        f"{path}: train_a2fd.hflip: train_a2fd does not read it (read by train_fomm); "
        "remove it from the section"
    )
    for stage in STAGES_BY_NAME:  # the project's own params set none where it is unread
        resolve_stage(ROOT / "params.yaml", stage)


def test_a_window_of_a_clip_that_barely_fits_starts_at_its_first_frame():
    """EAMM's r = 0 for clips of 16 < windows < 24 (reference 3.5); r was drawn anywhere."""
    from eamm.clips import window_start

    def starts(frames: int) -> set[int]:
        return {window_start(frames, 16, np.random.default_rng(seed)) for seed in range(200)}

    assert starts(18) == starts(22) == {0}
    assert starts(29) == set(range(3, 8))  # LRW
    assert starts(40) == set(range(3, 20))
