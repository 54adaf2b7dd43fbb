"""FOMM's random thin-plate-spline transform for the equivariance losses (FOMM model.py
``Transform``): an affine part around the identity plus TPS control-point offsets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eamm.models.util import make_coordinate_grid


class RandomTPS:
    def __init__(
        self,
        batch: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        noise = torch.normal(0.0, sigma_affine, (batch, 2, 3), generator=generator)
        self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)
        self.control = make_coordinate_grid(
            points_tps, points_tps, torch.device(device), torch.float32
        ).view(1, -1, 2)
        self.params = torch.normal(
            0.0, sigma_tps, (batch, 1, points_tps**2), generator=generator
        ).to(device)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """Map (B, N, 2) normalised coordinates through the transform."""
        theta = self.theta.type(coords.dtype)
        out = torch.matmul(theta[:, None, :, :2], coords.unsqueeze(-1)) + theta[:, None, :, 2:]
        out = out.squeeze(-1)
        control = self.control.type(coords.dtype)
        distances = coords.view(coords.shape[0], -1, 1, 2) - control.view(1, 1, -1, 2)
        distances = distances.abs().sum(-1)
        result = distances**2 * torch.log(distances + 1e-6)
        result = (result * self.params.type(coords.dtype)).sum(dim=2).view(coords.shape[0], -1, 1)
        return out + result

    def transform_frame(self, frame: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
        """Resample images (B, C, H, W) at the warped grid (reflection padding).
        ``align_corners`` as the generator's: ``True`` moves the pixels exactly as
        ``warp_coordinates`` moves the keypoints; FOMM's ``False`` also shrinks the frame by
        (w - 1) / w, which the equivariance loss then asks the keypoints to follow."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid(h, w, frame.device, frame.dtype).view(1, h * w, 2)
        grid = self.warp_coordinates(grid.expand(b, -1, -1)).view(b, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """d warp / d coords at (B, K, 2) points -> (B, K, 2, 2)."""
        with torch.enable_grad():
            coords = coords.detach().requires_grad_(True)
            warped = self.warp_coordinates(coords)
            gx = torch.autograd.grad(warped[..., 0].sum(), coords, create_graph=True)[0]
            gy = torch.autograd.grad(warped[..., 1].sum(), coords, create_graph=True)[0]
        return torch.stack([gx, gy], dim=-2)
