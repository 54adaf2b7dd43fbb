"""Importing EAMM's released checkpoints (``eamm.train.eamm_import``) from synthetic EAMM files."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import pytest
import torch

from eamm.checkpoint import load_checkpoint
from eamm.errors import EammError
from eamm.models import (
    AudioKeypointHead,
    AudioToFacialDynamics,
    EmotionDisplacement,
    KPDetector,
    OcclusionAwareGenerator,
)
from eamm.train.eamm_import import import_eamm_release

ADAM = {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0, 1]}]}


class NotATensor:
    pass


def _with_dead(state: dict, dead: list[str], prefix: str = "") -> dict:
    out = {prefix + k: v for k, v in state.items()}
    out.update({prefix + k: torch.randn(3, 2) for k in dead})
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """EAMM-format files made from our reference-size networks, and their import."""
    torch.manual_seed(0)
    nets = {
        "kp_detector": KPDetector(),
        "generator": OcclusionAwareGenerator(),
        "audio_feature": AudioToFacialDynamics(),
        "kp_detector_a": AudioKeypointHead(),
        "emo_detector": EmotionDisplacement(),
    }
    with torch.no_grad():  # non-default buffers, so that they are seen to be carried over
        nets["kp_detector"].predictor.encoder.down_blocks[0].norm.running_mean.normal_()
        nets["kp_detector_a"].jacobian.bias.normal_()
    states = {name: net.state_dict() for name, net in nets.items()}
    src = tmp_path_factory.mktemp("eamm_log")
    files = {"fomm": src / "124_52000.pth.tar", "audio": src / "1-6000.pth.tar"}
    files["emotion"] = src / "5-3000.pth.tar"
    torch.save(
        {
            "kp_detector": states["kp_detector"],
            "generator": _with_dead(states["generator"], [], prefix="module."),
            "epoch": 124,
            "optimizer_generator": ADAM,
            "optimizer_kp_detector": ADAM,
        },
        files["fomm"],
    )
    torch.save(
        {
            "audio_feature": _with_dead(
                states["audio_feature"], ["generator.style.1.weight", "generator.input.input"]
            ),
            "kp_detector_a": _with_dead(
                states["kp_detector_a"],
                ["predictor.encoder.down_blocks.0.conv.weight", "down.weight"],
            ),
            "optimizer_audio_feature": ADAM,
            "epoch": 1,
            "step": 6000,
        },
        files["audio"],
    )
    emo_dead = ["fc.weight", "fc.bias", "fc_n.0.weight", "final_4.0.weight", "final_10.0.weight"]
    torch.save(
        {
            "emo_detector": _with_dead(states["emo_detector"], emo_dead),
            "optimizer_emo_detector": ADAM,
            "epoch": 5,
            "step": 3000,
        },
        files["emotion"],
    )
    out_root = tmp_path_factory.mktemp("models")
    written = import_eamm_release(files["fomm"], files["audio"], files["emotion"], out_root)
    return {"nets": nets, "states": states, "files": files, "out": out_root, "written": written}


def test_import_writes_strictly_loadable_checkpoints(release: dict) -> None:
    out, files, states = release["out"], release["files"], release["states"]
    assert release["written"] == {
        "fomm": out / "fomm" / "checkpoint.pt",
        "a2fd_finetune": out / "a2fd_finetune" / "checkpoint.pt",
        "emotion": out / "emotion" / "checkpoint.pt",
    }
    expected = {
        "fomm": ("train_fomm", 124, "fomm", ["kp_detector", "generator"]),
        "a2fd_finetune": ("finetune_a2fd", 6000, "audio", ["audio_feature", "kp_detector_a"]),
        "emotion": ("train_emotion", 3000, "emotion", ["emo_detector"]),
    }
    for folder, (stage, step, source, names) in expected.items():
        ckpt = load_checkpoint(release["written"][folder])
        assert ckpt["stage"] == stage
        assert ckpt["step"] == step
        assert ckpt["optimizers"] == {} and ckpt["schedulers"] == {}
        assert ckpt["history"] == []
        assert ckpt["manifest_fingerprint"] == "eamm-release"
        assert ckpt["params"] == {
            "model": {"profile": "reference", "imported_from": files[source].name}
        }
        digest = hashlib.sha256(Path(files[source]).read_bytes()).hexdigest()
        assert ckpt["source_sha256"] == digest
        assert sorted(ckpt["models"]) == sorted(names)
        for name in names:
            got, want = ckpt["models"][name], states[name]
            assert list(got) == list(want)
            for key, tensor in want.items():
                assert torch.equal(got[key], tensor), (name, key)
            release["nets"][name].load_state_dict(got, strict=True)
        if folder == "emotion":
            assert ckpt["emotion_kp"] == [1, 4, 6, 8]
            assert ckpt["emotion_kp_source"] == "eamm-release"
        else:
            assert "emotion_kp" not in ckpt


def test_import_never_overwrites_a_checkpoint_unless_asked(release: dict, tmp_path: Path) -> None:
    """``--out`` defaults to the project's ``models``: a trained checkpoint there stays unless
    ``--replace`` says otherwise."""
    trained = tmp_path / "models" / "fomm" / "checkpoint.pt"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"a trained FOMM")
    files = release["files"]
    with pytest.raises(EammError, match=rf"^{re.escape(str(trained))}: a checkpoint is already"):
        import_eamm_release(files["fomm"], files["audio"], None, tmp_path / "models")
    assert trained.read_bytes() == b"a trained FOMM"
    assert not (tmp_path / "models" / "a2fd_finetune").exists()  # nothing of the import written
    written = import_eamm_release(files["fomm"], None, None, tmp_path / "models", replace=True)
    assert load_checkpoint(written["fomm"])["step"] == 124


def test_import_refuses_bad_files(release: dict, tmp_path: Path) -> None:
    state = dict(release["states"]["kp_detector"])
    del state["kp.bias"]
    state["bogus.weight"] = torch.zeros(1)
    state["kp.weight"] = torch.zeros(10, 35, 3, 3)
    mismatched = tmp_path / "mismatched.pth.tar"
    torch.save({"kp_detector": state, "epoch": 1}, mismatched)
    with pytest.raises(
        EammError, match=r"mismatched\.pth\.tar.*missing kp\.bias.*bogus\.weight.*shape kp\.weight"
    ):
        import_eamm_release(mismatched, None, None, tmp_path / "out")

    pickled = tmp_path / "pickled.pth.tar"
    torch.save({"generator": NotATensor()}, pickled)
    with pytest.raises(EammError, match=r"pickled\.pth\.tar.*weights_only=True.*NotATensor"):
        import_eamm_release(release["files"]["fomm"], None, pickled, tmp_path / "out")
    torch.save({"generator": NotATensor()}, pickled, pickle_protocol=4)
    with (
        warnings.catch_warnings(record=True) as warned,
        pytest.raises(EammError, match=r"pickled\.pth\.tar: cannot load safely"),
    ):
        warnings.simplefilter("always")
        import_eamm_release(release["files"]["fomm"], None, pickled, tmp_path / "out")
    assert warned == []  # torch's protocol warning printed before the one line

    with pytest.raises(EammError, match=r"absent\.pth\.tar: EAMM checkpoint does not exist"):
        import_eamm_release(tmp_path / "absent.pth.tar", None, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # all files are validated before anything is written
