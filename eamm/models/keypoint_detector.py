"""FOMM keypoint detector and the keypoint heads it shares with the audio branch.

Reference: ``eamm-reference.md`` 2.1 (``KPDetector``, the frozen teacher that also gives the source
keypoints) and 2.3 (``KPDetector_a``, whose only live part is the heads applied to the 35x64x64 map
of the audio network). Parameter names are FOMM's (``predictor.*``, ``kp.*``, ``jacobian.*``,
``down.weight``) so FOMM/EAMM checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eamm.models.util import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid

__all__ = ["KPDetector", "KeypointHead"]


class KeypointHead(nn.Module):
    """Keypoint value/jacobian heads on a given feature map (reference 2.1 heads, 2.3).

    ``kp``: conv in_features -> num_kp (7x7, padding ``pad``), softmax over all positions of
    logits / temperature = heatmap; ``value`` = heatmap-weighted mean of the coordinate grid.
    ``jacobian``: conv in_features -> 4 x num_kp (or 4 for ``single_jacobian_map``), initialised to
    the identity (weight 0, bias [1, 0, 0, 1]), averaged with the heatmap as weights.

    ``forward(feature_map (..., in_features, H, W))`` accepts any leading batch shape and returns
    ``value`` (..., K, 2) in [-1, 1], ``jacobian`` (..., K, 2, 2) (when estimated) and ``heatmap``
    (..., K, H - 6, W - 6) (58x58 for the 64x64 map).
    """

    def __init__(
        self,
        *,
        in_features: int = 35,
        num_kp: int = 10,
        temperature: float = 0.1,
        estimate_jacobian: bool = True,
        single_jacobian_map: bool = False,
        pad: int = 0,
    ):
        super().__init__()
        self.kp = nn.Conv2d(in_features, num_kp, kernel_size=(7, 7), padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(
                in_features, 4 * self.num_jacobian_maps, kernel_size=(7, 7), padding=pad
            )
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(
                    torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps)
                )
        else:
            self.num_jacobian_maps = 0
            self.jacobian = None
        self.num_kp = num_kp
        self.temperature = temperature

    def gaussian2kp(self, heatmap: torch.Tensor) -> torch.Tensor:
        """Expected (x, y) coordinates of (N, K, H, W) heatmaps -> (N, K, 2)."""
        h, w = heatmap.shape[-2:]
        grid = make_coordinate_grid(h, w, heatmap.device, heatmap.dtype)
        return torch.einsum("nkhw,hwc->nkc", heatmap, grid)

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = feature_map.shape[:-3]
        feature_map = feature_map.reshape(-1, *feature_map.shape[-3:])
        prediction = self.kp(feature_map)
        n, k, h, w = prediction.shape
        heatmap = F.softmax(prediction.view(n, k, -1) / self.temperature, dim=2).view(n, k, h, w)

        out = {"value": self.gaussian2kp(heatmap).reshape(*lead, k, 2)}
        if self.jacobian is not None:
            jacobian_map = self.jacobian(feature_map).view(n, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).flatten(3).sum(-1)
            out["jacobian"] = jacobian.reshape(*lead, k, 2, 2)
        out["heatmap"] = heatmap.reshape(*lead, k, h, w)
        return out


class KPDetector(KeypointHead):
    """FOMM keypoint detector (reference 2.1).

    Image (..., 3, 256, 256) -> anti-alias x``scale_factor`` -> Hourglass -> (N, 35, 64, 64) ->
    :class:`KeypointHead`. Returns ``value`` (..., 10, 2), ``jacobian`` (..., 10, 2, 2) and
    ``heatmap`` (..., 10, 58, 58); 14,215,368 parameters at the defaults (FOMM vox-256).
    """

    def __init__(
        self,
        *,
        block_expansion: int = 32,
        num_kp: int = 10,
        num_channels: int = 3,
        max_features: int = 1024,
        num_blocks: int = 5,
        temperature: float = 0.1,
        estimate_jacobian: bool = True,
        scale_factor: float = 0.25,
        single_jacobian_map: bool = False,
        pad: int = 0,
    ):
        predictor = Hourglass(
            block_expansion,
            in_features=num_channels,
            max_features=max_features,
            num_blocks=num_blocks,
        )
        super().__init__(
            in_features=predictor.out_filters,
            num_kp=num_kp,
            temperature=temperature,
            estimate_jacobian=estimate_jacobian,
            single_jacobian_map=single_jacobian_map,
            pad=pad,
        )
        self.predictor = predictor
        self.scale_factor = scale_factor
        self.down = (
            AntiAliasInterpolation2d(num_channels, scale_factor) if scale_factor != 1 else None
        )

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Hourglass map (N, block_expansion + num_channels, H*scale, W*scale) of (N, C, H, W)."""
        if self.down is not None:
            x = self.down(x)
        return self.predictor(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = x.shape[:-3]
        feature_map = self.feature_map(x.reshape(-1, *x.shape[-3:]))
        return super().forward(feature_map.reshape(*lead, *feature_map.shape[1:]))
