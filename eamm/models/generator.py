"""FOMM occlusion-aware generator, unchanged in EAMM (``eamm-reference.md`` 2.6)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from eamm.models.dense_motion import DenseMotionNetwork
from eamm.models.util import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d

__all__ = ["DENSE_MOTION_PARAMS", "OcclusionAwareGenerator"]

#: ``dense_motion_params`` of FOMM's vox-256.yaml (reference 2).
DENSE_MOTION_PARAMS: Mapping[str, Any] = MappingProxyType(
    {"block_expansion": 64, "max_features": 1024, "num_blocks": 5, "scale_factor": 0.25}
)


class OcclusionAwareGenerator(nn.Module):
    """Render the source image moved by the keypoints (Johnson-style encoder/decoder).

    ``forward(source_image (B, 3, H, W), kp_driving, kp_source)`` returns ``prediction``
    (B, 3, H, W) in [0, 1] and, with a dense motion network, ``mask`` (B, K+1, h, w),
    ``sparse_deformed`` (B, K+1, 3, h, w), ``occlusion_map`` (B, 1, h, w) and ``deformed``
    (source warped by the upsampled deformation, B, 3, H, W); h = w = 64 for 256 input.
    45,575,391 parameters with the defaults (FOMM vox-256, dense motion network included).

    :param dense_motion_params: keyword arguments of :class:`DenseMotionNetwork` (``num_kp``,
        ``num_channels`` and ``estimate_occlusion_map`` come from here); ``None`` disables it.
    :param estimate_jacobian: unused, accepted so FOMM's ``common_params`` can be splatted in;
        jacobians are used whenever the keypoint dicts carry them.
    :param align_corners: how the warps (``grid_sample`` and the deformation's resize) read the
        [-1, 1] keypoint grid, whose ends are the centres of the first and last pixels
        (``make_coordinate_grid``). ``False`` is FOMM's and EAMM's (torch >= 1.3's default,
        what their checkpoints were trained with): the ends are read as the pixels' outer
        edges, so even the identity warp shrinks the image by (w - 1) / w around its centre,
        3 % on the 32x32 features of the 64-px profile. ``True``: the identity warp is exact.
    :param source_skip: (ours; FOMM and EAMM: ``False``) the last convolution also draws a
        blend mask, and the prediction is that mix of the source warped at full resolution
        (``deformed``) and the decoded image: a small generator trained for minutes decodes a
        blur, while the warped source keeps the face's detail wherever the motion explains it.
        Needs the dense motion network.
    """

    def __init__(
        self,
        *,
        num_channels: int = 3,
        num_kp: int = 10,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        num_bottleneck_blocks: int = 6,
        estimate_occlusion_map: bool = True,
        dense_motion_params: Mapping[str, Any] | None = DENSE_MOTION_PARAMS,
        estimate_jacobian: bool = True,
        align_corners: bool = False,
        source_skip: bool = False,
    ):
        super().__init__()
        if source_skip and dense_motion_params is None:
            raise ValueError("source_skip blends the warped source: it needs dense_motion_params")
        self.align_corners, self.source_skip = align_corners, source_skip
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp,
                num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                align_corners=align_corners,
                **dict(dense_motion_params),
            )
        else:
            self.dense_motion_network = None

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                min(max_features, block_expansion * (2**i)),
                min(max_features, block_expansion * (2 ** (i + 1))),
                kernel_size=(3, 3),
                padding=(1, 1),
            )
            for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(
                min(max_features, block_expansion * (2 ** (num_down_blocks - i))),
                min(max_features, block_expansion * (2 ** (num_down_blocks - i - 1))),
                kernel_size=(3, 3),
                padding=(1, 1),
            )
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        in_features = min(max_features, block_expansion * (2**num_down_blocks))
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(
                f"r{i}", ResBlock2d(in_features, kernel_size=(3, 3), padding=(1, 1))
            )
        self.final = nn.Conv2d(
            block_expansion, num_channels + int(source_skip), kernel_size=(7, 7), padding=(3, 3)
        )
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels

    def deform_input(self, inp: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """Backward-warp ``inp`` with a (B, h, w, 2) grid, bilinearly resized to inp's size."""
        _, h_old, w_old, _ = deformation.shape
        _, _, h, w = inp.shape
        if h_old != h or w_old != w:
            deformation = deformation.permute(0, 3, 1, 2)
            deformation = F.interpolate(
                deformation, size=(h, w), mode="bilinear", align_corners=self.align_corners
            )
            deformation = deformation.permute(0, 2, 3, 1)
        return F.grid_sample(inp, deformation, align_corners=self.align_corners)

    def forward(
        self,
        source_image: torch.Tensor,
        kp_driving: Mapping[str, torch.Tensor],
        kp_source: Mapping[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        out = self.first(source_image)
        for down_block in self.down_blocks:
            out = down_block(out)

        output_dict: dict[str, torch.Tensor] = {}
        if self.dense_motion_network is not None:
            dense_motion = self.dense_motion_network(
                source_image=source_image, kp_driving=kp_driving, kp_source=kp_source
            )
            output_dict["mask"] = dense_motion["mask"]
            output_dict["sparse_deformed"] = dense_motion["sparse_deformed"]
            deformation = dense_motion["deformation"]
            out = self.deform_input(out, deformation)

            occlusion_map = dense_motion.get("occlusion_map")
            if occlusion_map is not None:
                output_dict["occlusion_map"] = occlusion_map
                if out.shape[2:] != occlusion_map.shape[2:]:
                    occlusion_map = F.interpolate(
                        occlusion_map,
                        size=out.shape[2:],
                        mode="bilinear",
                        align_corners=self.align_corners,
                    )
                out = out * occlusion_map
            output_dict["deformed"] = self.deform_input(source_image, deformation)

        out = self.bottleneck(out)
        for up_block in self.up_blocks:
            out = up_block(out)
        drawn = torch.sigmoid(self.final(out))
        if self.source_skip:
            blend = drawn[:, self.num_channels :]
            output_dict["blend"] = blend
            drawn = blend * output_dict["deformed"] + (1 - blend) * drawn[:, : self.num_channels]
        output_dict["prediction"] = drawn
        return output_dict
