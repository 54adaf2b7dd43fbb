"""FOMM dense motion network, unchanged in EAMM (``eamm-reference.md`` 2.5)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from eamm.models.util import (
    AntiAliasInterpolation2d,
    Hourglass,
    kp2gaussian,
    make_coordinate_grid,
)

__all__ = ["DenseMotionNetwork"]

KP = Mapping[str, torch.Tensor]


class DenseMotionNetwork(nn.Module):
    """Predict a dense backward deformation and an occlusion map from sparse keypoint motion.

    ``forward(source_image (B, C, H, W), kp_driving, kp_source)`` with keypoint dicts holding
    ``value`` (B, K, 2) and optionally ``jacobian`` (B, K, 2, 2) (used when ``kp_driving`` has
    one). At ``scale_factor`` 0.25 and 256x256 input it returns ``sparse_deformed``
    (B, K+1, C, 64, 64), ``mask`` (B, K+1, 64, 64), ``deformation`` (B, 64, 64, 2) and
    ``occlusion_map`` (B, 1, 64, 64) when ``estimate_occlusion_map``.

    ``align_corners``: how ``grid_sample`` reads the keypoint grid's [-1, 1] (see
    :class:`~eamm.models.generator.OcclusionAwareGenerator`).
    """

    def __init__(
        self,
        *,
        block_expansion: int = 64,
        num_blocks: int = 5,
        max_features: int = 1024,
        num_kp: int = 10,
        num_channels: int = 3,
        estimate_occlusion_map: bool = True,
        scale_factor: float = 0.25,
        kp_variance: float = 0.01,
        align_corners: bool = False,
    ):
        super().__init__()
        self.align_corners = align_corners
        self.hourglass = Hourglass(
            block_expansion=block_expansion,
            in_features=(num_kp + 1) * (num_channels + 1),
            max_features=max_features,
            num_blocks=num_blocks,
        )
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=3)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=3)
            if estimate_occlusion_map
            else None
        )
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.down = (
            AntiAliasInterpolation2d(num_channels, scale_factor) if scale_factor != 1 else None
        )

    def create_heatmap_representations(
        self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP
    ) -> torch.Tensor:
        """H_k(z) (FOMM eq. 6): driving minus source Gaussians, zero background; (B,K+1,1,h,w)."""
        spatial_size = source_image.shape[2:]
        heatmap = kp2gaussian(kp_driving, spatial_size, self.kp_variance) - kp2gaussian(
            kp_source, spatial_size, self.kp_variance
        )
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *spatial_size)
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def create_sparse_motions(
        self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP
    ) -> torch.Tensor:
        """T_k(z) = kp_src + J_src J_drv^-1 (z - kp_drv) (FOMM eq. 4) -> (B, K+1, h, w, 2).

        The background motion (index 0) is the identity grid.
        """
        bs, _, h, w = source_image.shape
        src_value = kp_source["value"]
        identity_grid = make_coordinate_grid(h, w, src_value.device, src_value.dtype)
        coordinate_grid = identity_grid - kp_driving["value"][:, :, None, None, :]
        if "jacobian" in kp_driving:
            jacobian = torch.matmul(kp_source["jacobian"], torch.inverse(kp_driving["jacobian"]))
            coordinate_grid = torch.einsum("bkij,bkhwj->bkhwi", jacobian, coordinate_grid)
        driving_to_source = coordinate_grid + src_value[:, :, None, None, :]
        identity = identity_grid.expand(bs, 1, h, w, 2)
        return torch.cat([identity, driving_to_source], dim=1)

    def create_deformed_source_image(
        self, source_image: torch.Tensor, sparse_motions: torch.Tensor
    ) -> torch.Tensor:
        """Source warped by each T_k (FOMM eq. 7), (B, K+1, C, h, w)."""
        bs, c, h, w = source_image.shape
        k1 = self.num_kp + 1
        source_repeat = source_image.unsqueeze(1).expand(bs, k1, c, h, w).reshape(bs * k1, c, h, w)
        sparse_deformed = F.grid_sample(
            source_repeat,
            sparse_motions.reshape(bs * k1, h, w, 2),
            align_corners=self.align_corners,
        )
        return sparse_deformed.view(bs, k1, c, h, w)

    def forward(
        self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP
    ) -> dict[str, torch.Tensor]:
        if self.down is not None:
            source_image = self.down(source_image)
        bs, _, h, w = source_image.shape

        out: dict[str, torch.Tensor] = {}
        heatmap_representation = self.create_heatmap_representations(
            source_image, kp_driving, kp_source
        )
        sparse_motion = self.create_sparse_motions(source_image, kp_driving, kp_source)
        deformed_source = self.create_deformed_source_image(source_image, sparse_motion)
        out["sparse_deformed"] = deformed_source

        hourglass_input = torch.cat([heatmap_representation, deformed_source], dim=2)
        prediction = self.hourglass(hourglass_input.view(bs, -1, h, w))

        mask = F.softmax(self.mask(prediction), dim=1)
        out["mask"] = mask
        # in float32 under autocast too: a bf16 grid (8 bits) moves every sample by up to a
        # tenth of a pixel, and the generator's source skip shows that as it resamples the photo
        with torch.autocast(source_image.device.type, enabled=False):
            out["deformation"] = torch.einsum(
                "bkhw,bkhwc->bhwc", mask.float(), sparse_motion.float()
            )
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out
