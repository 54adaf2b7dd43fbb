"""68-point alignment templates in crop pixel coordinates (256x256 unless scaled)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from eamm.errors import EammError

DEFAULT_TEMPLATE = Path(__file__).with_name("data") / "template68.npy"
TEMPLATE_SIZE = 256


@cache
def _load(path: str) -> np.ndarray:
    try:
        points = np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as err:
        raise EammError(f"{path}: cannot read alignment template ({err})") from None
    if points.shape != (68, 2):
        raise EammError(f"{path}: alignment template must be (68, 2), got {points.shape}")
    return points


def load_template(spec: str = "default", crop_size: int = TEMPLATE_SIZE) -> np.ndarray:
    """The template named in params ('default' or a .npy path), scaled to ``crop_size``."""
    path = DEFAULT_TEMPLATE if spec == "default" else Path(spec)
    return _load(str(path)) * (crop_size / TEMPLATE_SIZE)
