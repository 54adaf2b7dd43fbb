"""Torch helpers shared by training and inference: the device to run on, frames as tensors."""

from __future__ import annotations

import numpy as np
import torch

from eamm.errors import EammError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def pick_device(preference: str, setting: str = "generate.device") -> torch.device:
    """The device ``preference`` names (``auto``: CUDA when there is one, else the CPU);
    EammError naming the ``setting`` it came from (``trainer.device``, ``generate.device``)
    when it names no device, or one this machine's torch cannot use."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise EammError(
            f"params: {setting} '{preference}' is not a device (use {DEVICE_CHOICES})"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "has no CUDA" if torch.version.cuda is None else "finds no CUDA GPU"
            raise EammError(
                f"params: {setting} is '{preference}', but this machine's torch {why} "
                f"(torch {torch.__version__}): use auto or cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EammError(
                f"params: {setting} is '{preference}', but torch sees "
                f"{torch.cuda.device_count()} CUDA GPU(s) (cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise EammError(f"params: {setting} is 'mps', but this machine's torch cannot use it")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise EammError(
            f"params: {setting} '{preference}' is not a device to run on (use {DEVICE_CHOICES})"
        )
    return device


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return torch.from_numpy(frames).movedim(-1, -3).float().div_(255.0)
