"""One Euro filter (Casiez et al. 2012), as EAMM's ``filter1.py`` applies it, vectorised
over any number of channels: first sample passes through, then per element
alpha(fc) = 1 / (1 + freq / (2 pi fc)), fc = mincutoff + beta * |smoothed derivative|."""

from __future__ import annotations

import numpy as np


def _alpha(cutoff: np.ndarray | float, freq: float) -> np.ndarray | float:
    return 1.0 / (1.0 + freq / (2 * np.pi * cutoff))


def one_euro(
    x: np.ndarray, mincutoff: float, beta: float, dcutoff: float = 1.0, freq: float = 100.0
) -> np.ndarray:
    """Filter along axis 0; returns float64 of x's shape. NaNs should be filled before."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    out[0] = x[0]
    prev = x[0]
    dx_prev = np.zeros_like(x[0])
    a_d = _alpha(dcutoff, freq)
    for t in range(1, len(x)):
        dx = (x[t] - prev) * freq
        dx_hat = a_d * dx + (1 - a_d) * dx_prev
        a = _alpha(mincutoff + beta * np.abs(dx_hat), freq)
        out[t] = a * x[t] + (1 - a) * out[t - 1]
        prev, dx_prev = x[t], dx_hat
    return out
