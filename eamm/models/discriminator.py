"""FOMM multi-scale patch discriminator (``eamm-reference.md`` 2.7).

EAMM builds and loads it from the FOMM checkpoint but never trains it. Spectral norm uses the legacy
``nn.utils.spectral_norm`` so the state-dict keys (``weight_orig``, ``weight_u``, ``weight_v``)
match FOMM's checkpoints (reference 2.10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from eamm.models.util import kp2gaussian

__all__ = ["Discriminator", "DownBlock2d", "MultiScaleDiscriminator"]


class DownBlock2d(nn.Module):
    """Conv (no padding, optional SN) -> optional InstanceNorm -> LeakyReLU 0.2 -> optional pool."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        norm: bool = False,
        kernel_size: int = 4,
        pool: bool = False,
        sn: bool = False,
    ):
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        if self.pool:
            out = F.avg_pool2d(out, (2, 2))
        return out


class Discriminator(nn.Module):
    """Pix2Pix-like discriminator; returns (feature maps of every block, prediction map)."""

    def __init__(
        self,
        *,
        num_channels: int = 3,
        block_expansion: int = 32,
        num_blocks: int = 4,
        max_features: int = 512,
        sn: bool = True,
        use_kp: bool = False,
        num_kp: int = 10,
        kp_variance: float = 0.01,
    ):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                num_channels + num_kp * use_kp
                if i == 0
                else min(max_features, block_expansion * (2**i)),
                min(max_features, block_expansion * (2 ** (i + 1))),
                norm=(i != 0),
                kernel_size=4,
                pool=(i != num_blocks - 1),
                sn=sn,
            )
            for i in range(num_blocks)
        )
        conv = nn.Conv2d(min(max_features, block_expansion * (2**num_blocks)), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(
        self, x: torch.Tensor, kp: Mapping[str, torch.Tensor] | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = x
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator was built with use_kp=True: pass kp")
            out = torch.cat([out, kp2gaussian(kp, x.shape[2:], self.kp_variance)], dim=1)
        feature_maps = []
        for down_block in self.down_blocks:
            out = down_block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One :class:`Discriminator` per scale, applied to an image pyramid (reference 2.7).

    ``forward(x, kp=None)`` takes the dict of :class:`~eamm.models.perceptual.ImagePyramide`
    (keys ``prediction_<scale>``) and returns ``feature_maps_<scale>`` (list of the block outputs:
    126/61/29/26 px for 256 input) and ``prediction_map_<scale>`` ((B, 1, 26, 26) for 256 input).
    2,758,849 parameters at the defaults (scales [1]).

    :param estimate_jacobian: unused, accepted so FOMM's ``common_params`` can be splatted in.
    """

    def __init__(
        self,
        *,
        scales: Sequence[float] = (1,),
        num_channels: int = 3,
        block_expansion: int = 32,
        num_blocks: int = 4,
        max_features: int = 512,
        sn: bool = True,
        use_kp: bool = False,
        num_kp: int = 10,
        kp_variance: float = 0.01,
        estimate_jacobian: bool = True,
    ):
        super().__init__()
        self.scales = tuple(scales)
        self.discs = nn.ModuleDict(
            {
                str(scale).replace(".", "-"): Discriminator(
                    num_channels=num_channels,
                    block_expansion=block_expansion,
                    num_blocks=num_blocks,
                    max_features=max_features,
                    sn=sn,
                    use_kp=use_kp,
                    num_kp=num_kp,
                    kp_variance=kp_variance,
                )
                for scale in self.scales
            }
        )

    def forward(
        self, x: Mapping[str, torch.Tensor], kp: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        out: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            feature_maps, prediction_map = disc(x[f"prediction_{scale}"], kp)
            out[f"feature_maps_{scale}"] = feature_maps
            out[f"prediction_map_{scale}"] = prediction_map
        return out
