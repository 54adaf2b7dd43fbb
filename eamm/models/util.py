"""Building blocks shared by the networks (FOMM ``modules/util.py``, EAMM ``modules/util.py``).

Reference: ``eamm-reference.md`` section 2.0. Submodule names follow FOMM so FOMM/EAMM state dicts
load unchanged; FOMM's ``SynchronizedBatchNorm2d`` is plain ``nn.BatchNorm2d`` here (same keys).

Modernised against the original (reference 6.4): no ``.cuda()``; coordinate grids are cached per
(size, device, dtype) instead of being rebuilt on the CPU at every call; ``torch.meshgrid`` gets
``indexing="ij"``; bilinear resampling passes ``align_corners=False`` explicitly (what torch 1.10
did by default). Nearest-neighbour upsampling cannot take ``align_corners`` and has none.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AntiAliasInterpolation2d",
    "Decoder",
    "DownBlock2d",
    "Encoder",
    "Hourglass",
    "ResBlock2d",
    "SameBlock2d",
    "UpBlock2d",
    "conv2d",
    "kp2gaussian",
    "make_coordinate_grid",
    "positional_encoding",
]


@functools.lru_cache(maxsize=64)
def _coordinate_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Built outside inference mode so the cached tensor can also be saved for backward later.
    with torch.inference_mode(False), torch.no_grad():
        x = torch.arange(w, device=device, dtype=torch.float64)
        y = torch.arange(h, device=device, dtype=torch.float64)
        x = 2 * (x / (w - 1)) - 1
        y = 2 * (y / (h - 1)) - 1
        yy, xx = torch.meshgrid(y, x, indexing="ij")
        return torch.stack([xx, yy], dim=-1).to(dtype)


def make_coordinate_grid(
    h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Return the (h, w, 2) grid of normalised (x, y) positions in [-1, 1] (reference 2.0).

    ``x_j = 2j/(w-1) - 1`` and ``y_i = 2i/(h-1) - 1``. The tensor is cached per
    (h, w, device, dtype) and shared between callers: treat it as read-only.
    """
    device = torch.device(device if device is not None else "cpu")
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    return _coordinate_grid(int(h), int(w), device, dtype)


def kp2gaussian(
    kp: Mapping[str, torch.Tensor] | torch.Tensor,
    spatial_size: tuple[int, int] | torch.Size,
    kp_variance: float,
) -> torch.Tensor:
    """Gaussian-like heatmaps ``exp(-0.5 ||z - kp||^2 / kp_variance)`` (reference 2.0).

    :param kp: keypoint dict (its ``value``, shape (..., K, 2)) or the (..., K, 2) tensor itself.
    :return: (..., K, h, w).
    """
    mean = kp["value"] if isinstance(kp, Mapping) else kp
    h, w = spatial_size
    grid = make_coordinate_grid(h, w, mean.device, mean.dtype)
    diff = grid - mean[..., None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / kp_variance)


def positional_encoding(x: torch.Tensor, num_freqs: int = 10) -> torch.Tensor:
    """NeRF positional encoding as EAMM's ``get_embedder(10)`` (reference 2.4, step 4).

    For a last dimension of size D: ``[x, sin(f0 x), cos(f0 x), ..., sin(fN x), cos(fN x)]`` with
    frequencies ``2^0 .. 2^(num_freqs-1)``: D * (1 + 2 num_freqs) values (6 -> 126).
    """
    freqs = 2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)
    scaled = x[..., None, :] * freqs[:, None]  # (..., F, D)
    periodic = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # (..., F, 2, D)
    return torch.cat([x, periodic.flatten(-3)], dim=-1)


def conv2d(
    channel_in: int, channel_out: int, ksize: int = 3, stride: int = 1, padding: int = 1
) -> nn.Sequential:
    """EAMM's audio-encoder block: conv (no bias) -> BatchNorm2d -> ReLU (reference 2.0)."""
    return nn.Sequential(
        nn.Conv2d(channel_in, channel_out, ksize, stride, padding, bias=False),
        nn.BatchNorm2d(channel_out),
        nn.ReLU(inplace=True),
    )


class ResBlock2d(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv plus identity skip; keeps the resolution (reference 2.0)."""

    def __init__(self, in_features: int, kernel_size: int | tuple = 3, padding: int | tuple = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Module):
    """Nearest x2 upsampling -> conv -> BN -> ReLU (reference 2.0)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple = 3,
        padding: int | tuple = 1,
        groups: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups
        )
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(out)))


class DownBlock2d(nn.Module):
    """Conv -> BN -> ReLU -> 2x2 average pooling (reference 2.0)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple = 3,
        padding: int | tuple = 1,
        groups: int = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups
        )
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    """Conv -> BN -> ReLU, resolution preserved (reference 2.0)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        groups: int = 1,
        kernel_size: int | tuple = 3,
        padding: int | tuple = 1,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups
        )
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """Hourglass encoder: ``num_blocks`` DownBlock2d to min(max_features, be * 2^(i+1)) channels."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256
    ):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else min(max_features, block_expansion * (2**i)),
                min(max_features, block_expansion * (2 ** (i + 1))),
                kernel_size=3,
                padding=1,
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for down_block in self.down_blocks:
            outs.append(down_block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: UpBlock2d from the deepest level, each output concatenated with the skip.

    Output channels ``out_filters = block_expansion + in_features``.
    """

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256
    ):
        super().__init__()
        up_blocks = []
        for i in reversed(range(num_blocks)):
            mult = 1 if i == num_blocks - 1 else 2
            in_filters = mult * min(max_features, block_expansion * (2 ** (i + 1)))
            out_filters = min(max_features, block_expansion * (2**i))
            up_blocks.append(UpBlock2d(in_filters, out_filters, kernel_size=3, padding=1))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        skips = list(x)
        out = skips.pop()
        for up_block in self.up_blocks:
            out = torch.cat([up_block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net style hourglass (reference 2.0); needs H, W divisible by 2^num_blocks."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256
    ):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AntiAliasInterpolation2d(nn.Module):
    """Depthwise Gaussian blur, then subsampling by ``scale`` (reference 2.0).

    :param sigma: blur standard deviation. EAMM hard-codes 1.5 for every scale (the default);
        ``None`` gives FOMM's ``(1/scale - 1)/2``. Both agree at scale 0.25. Scale 1 is identity.

    Subsampling keeps every (1/scale)-th pixel, like EAMM's slicing and FOMM's nearest
    ``interpolate`` (identical for integer 1/scale); other scales use nearest interpolation.
    The kernel is the ``weight`` buffer (it is in FOMM's state dicts as ``down.weight``).
    """

    def __init__(self, channels: int, scale: float, sigma: float | None = 1.5):
        super().__init__()
        if sigma is None:
            sigma = (1 / scale - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        if sigma > 0:
            coords = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
            gauss = torch.exp(-(coords**2) / (2 * sigma**2))
            kernel = gauss[:, None] * gauss[None, :]
            kernel = kernel / kernel.sum()
        else:  # scale 1 with FOMM's formula: no blur
            kernel = torch.ones(1, 1)
        self.register_buffer("weight", kernel.expand(channels, 1, *kernel.shape).clone())
        self.groups = channels
        self.scale = scale
        self.sigma = sigma
        inv = 1 / scale
        self.stride = round(inv) if math.isclose(inv, round(inv)) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.groups)
        if self.stride is not None:
            return out[:, :, :: self.stride, :: self.stride]
        return F.interpolate(out, scale_factor=(self.scale, self.scale), mode="nearest")
