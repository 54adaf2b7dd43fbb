"""The renderer's speed fields of ``GenerateParams`` (benchmarks/generate.py): the defaults change
nothing, bf16 and channels_last render close to fp32, and padded batches (the compiled
generator's one shape) give the frames of unpadded ones."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from eamm.config import GenerateParams
from eamm.generate import EammModels, render, tune_renderer
from eamm.models.build import build_networks, profile
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def case() -> tuple[EammModels, torch.Tensor, dict, dict]:
    torch.manual_seed(0)
    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    sizes = profile(model | {"profile": "tiny"})
    nets = build_networks(sizes)
    for net in nets.values():
        net.eval()
    models = EammModels(
        nets["kp_detector"],
        nets["generator"],
        nets["audio_feature"],
        nets["kp_detector_a"],
        None,
        [],
        sizes["image_size"],
    )
    size = sizes["image_size"]
    source = torch.rand(1, 3, size, size)
    with torch.no_grad():
        kp_source = models.kp_detector(source)
    kp = {
        "value": kp_source["value"] + 0.05 * torch.randn(7, *kp_source["value"].shape[1:]),
        "jacobian": kp_source["jacobian"].expand(7, -1, -1, -1),
    }
    return models, source, kp_source, kp


def _frames(models: EammModels, case, batch: int = 3) -> torch.Tensor:
    _, source, kp_source, kp = case
    with torch.no_grad():
        return render(models, source, kp_source, kp, batch)


def test_defaults_leave_the_renderer_as_loaded(case):
    models = copy.deepcopy(case[0])
    before = _frames(models, case)
    generator = models.generator
    tuned = tune_renderer(models, GenerateParams())
    assert tuned.generator is generator
    assert (tuned.render_dtype, tuned.fixed_batch) == (None, None)
    after = _frames(tuned, case)
    assert after.dtype == torch.float32 and torch.equal(after, before)


@pytest.mark.parametrize(
    ("fields", "atol"),
    [
        ({"channels_last": True}, 1e-5),
        ({"precision": "bf16"}, 0.02),
        ({"precision": "bf16", "channels_last": True}, 0.02),
    ],
)
def test_variants_render_close_to_fp32(case, fields, atol):
    expected = _frames(case[0], case)
    models = tune_renderer(copy.deepcopy(case[0]), GenerateParams(**fields))
    frames = _frames(models, case)
    assert frames.dtype == torch.float32 and frames.shape == expected.shape
    assert torch.allclose(frames, expected, atol=atol)


def test_padded_batches_give_the_same_frames(case):
    expected = _frames(case[0], case)
    models = copy.deepcopy(case[0])
    models.fixed_batch = 3  # what torch_compile sets: 7 frames render as 3 + 3 + (1 padded to 3)
    calls = []
    generator = models.generator
    models.generator = lambda source, **kw: calls.append(len(source)) or generator(source, **kw)
    frames = _frames(models, case)
    assert calls == [3, 3, 3] and frames.shape == expected.shape
    assert torch.allclose(frames, expected, atol=1e-5)
