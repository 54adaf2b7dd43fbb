"""Inference keypoint modes on small random networks: relative motion starts at the source's
own keypoints, the source's jacobians can be kept, the emotion displacement survives the
relative normalisation, and FOMM reconstruction renders the real frames' keypoints."""

from __future__ import annotations

import pytest
import torch
import yaml

from eamm.config import GenerateParams
from eamm.generate import EammModels, animate, animate_stream, reconstruct, render
from eamm.models.build import build_emotion_net, build_networks, profile
from tests.conftest import ROOT

T = 6


@pytest.fixture(scope="module")
def models() -> EammModels:
    torch.manual_seed(0)
    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    sizes = profile(model | {"profile": "tiny"})
    nets = build_networks(sizes)
    emotion = build_emotion_net(sizes, 4)
    with torch.no_grad():  # FOMM starts jacobians at identity for any input: let them vary
        nets["kp_detector_a"].jacobian.weight.normal_(0, 0.05)
    for net in [*nets.values(), emotion]:
        net.eval()
    return EammModels(
        nets["kp_detector"],
        nets["generator"],
        nets["audio_feature"],
        nets["kp_detector_a"],
        emotion,
        [1, 4, 6, 8],
        sizes["image_size"],
    )


@pytest.fixture(scope="module")
def inputs(models):
    torch.manual_seed(1)
    size = models.image_size
    return (
        torch.rand(1, 3, size, size),
        torch.randn(T, 28, 12),
        torch.randn(T, 6),
        torch.rand(T, 3, size, size),
    )


def _params(**changes) -> GenerateParams:
    return GenerateParams(device="cpu", batch_size=4, **changes)


def test_relative_first_frame_is_the_source_at_its_own_keypoints(models, inputs):
    source, mfcc, pose, _ = inputs
    out = animate(models, source, mfcc, pose, None, _params(relative=True))[0]
    with torch.no_grad():
        still = render(models, source, models.kp_detector(source), _kp_repeat(models, source), 4)
    assert torch.allclose(out["neutral"][0], still[0], atol=1e-5)


def _kp_repeat(models, source):
    with torch.no_grad():
        kp = models.kp_detector(source)
    return {k: v.expand(1, *v.shape[1:]) for k, v in kp.items()}


def test_emotion_displacement_survives_relative_mode(models, inputs):
    source, mfcc, pose, emotion_frames = inputs
    for relative in (False, True):
        out = animate(models, source, mfcc, pose, emotion_frames, _params(relative=relative))[0]
        assert set(out) == {"neutral", "emotion"}
        assert (out["emotion"] - out["neutral"]).abs().max() > 1e-4, relative


def test_source_jacobians_are_kept_when_asked(models, inputs):
    source, mfcc, pose, _ = inputs
    keep = _params(relative=True, relative_jacobian=False)
    kept = animate(models, source, mfcc, pose, None, keep)[0]
    moved = animate(models, source, mfcc, pose, None, _params(relative=True))[0]
    assert torch.allclose(kept["neutral"][0], moved["neutral"][0], atol=1e-5)  # same at t = 0
    assert not torch.equal(kept["neutral"][1:], moved["neutral"][1:])


def test_reconstruction_of_the_source_itself_is_the_still_render(models, inputs):
    source = inputs[0]
    frames = reconstruct(models, source, source.expand(3, -1, -1, -1), batch_size=2)
    with torch.no_grad():
        still = render(models, source, models.kp_detector(source), _kp_repeat(models, source), 4)
    assert frames.shape == (3, *source.shape[1:])
    assert torch.allclose(frames, still.expand_as(frames), atol=1e-5)


@pytest.mark.parametrize("relative", [False, True])
def test_windows_give_the_frames_of_one_window(models, inputs, relative):
    """Streaming carries the LSTM state, the One Euro filters and the first frame's keypoints
    from window to window: windows of 4 and 2 frames give the all-at-once frames."""
    source, mfcc, pose, emotion_frames = inputs
    params = _params(relative=relative)
    whole = animate(models, source, mfcc, pose, emotion_frames, params)[0]
    for size in (4, 2):
        steps = range(0, T, size)
        windows = [
            (mfcc[i : i + size], pose[i : i + size], emotion_frames[i : i + size]) for i in steps
        ]
        parts = list(animate_stream(models, source, windows, params))
        for name, frames in whole.items():
            streamed = torch.cat([p[name] for p in parts])
            assert torch.allclose(streamed, frames, atol=1e-5), (name, size)
