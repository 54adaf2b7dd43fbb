"""Torch helpers shared by training and inference: the device to run on, frames as tensors."""

from __future__ import annotations

import numpy as np
import torch


def pick_device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float().div_(255.0)
