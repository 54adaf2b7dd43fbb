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
    # a smooth image, as photos are at this size: the renderer's source skip resamples it, and
    # under bf16 a sample moves by a fraction of a pixel, which on per-pixel noise would swing
    # its value by a few hundredths
    y, x = torch.meshgrid(torch.linspace(0, 3, size), torch.linspace(0, 3, size), indexing="ij")
    phase = torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1)
    source = (0.5 + 0.4 * torch.sin(x + 2 * y + phase))[None]
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
    ("fields", "mean_tol", "max_tol"),
    [
        ({"channels_last": True}, 1e-6, 1e-5),
        # the bf16 mask of the dense motion moves the source skip's samples by a fraction of a
        # pixel: up to 0.03 on the image's edges, where the warp leaves the frame, ~1e-3 within
        ({"precision": "bf16"}, 0.002, 0.03),
        ({"precision": "bf16", "channels_last": True}, 0.002, 0.03),
    ],
)
def test_variants_render_close_to_fp32(case, fields, mean_tol, max_tol):
    expected = _frames(case[0], case)
    models = tune_renderer(copy.deepcopy(case[0]), GenerateParams(**fields))
    frames = _frames(models, case)
    assert frames.dtype == torch.float32 and frames.shape == expected.shape
    difference = (frames - expected).abs()
    assert difference.mean() < mean_tol and difference.max() < max_tol


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
