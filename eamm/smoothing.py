"""One Euro filter (Casiez et al. 2012), as EAMM's ``filter1.py`` applies it, vectorised
over any number of channels: first sample passes through, then per element
alpha(fc) = 1 / (1 + freq / (2 pi fc)), fc = mincutoff + beta * |smoothed derivative|."""

from __future__ import annotations

import numpy as np


def _alpha(cutoff: np.ndarray | float, freq: float) -> np.ndarray | float:
    return 1.0 / (1.0 + freq / (2 * np.pi * cutoff))


class OneEuro:
    """The filter with its state kept between calls: a long signal filtered in pieces gives
    exactly what one call on the whole signal gives (generation streams over windows)."""

    def __init__(
        self, mincutoff: float, beta: float, dcutoff: float = 1.0, freq: float = 100.0
    ) -> None:
        self.mincutoff, self.beta, self.freq = mincutoff, beta, freq
        self._a_d = _alpha(dcutoff, freq)
        self._prev: np.ndarray | None = None  # last input, derivative estimate, last output
        self._dx_prev: np.ndarray | None = None
        self._out_prev: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The next samples, filtered along axis 0; float64 of x's shape."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty_like(x)
        if len(x) == 0:
            return out
        start = 0
        prev, dx_prev, last = self._prev, self._dx_prev, self._out_prev
        if prev is None:
            out[0] = prev = last = x[0]
            dx_prev = np.zeros_like(x[0])
            start = 1
        for t in range(start, len(x)):
            dx = (x[t] - prev) * self.freq
            dx_hat = self._a_d * dx + (1 - self._a_d) * dx_prev
            a = _alpha(self.mincutoff + self.beta * np.abs(dx_hat), self.freq)
            out[t] = last = a * x[t] + (1 - a) * last
            prev, dx_prev = x[t], dx_hat
        self._prev, self._dx_prev, self._out_prev = prev.copy(), dx_prev.copy(), out[-1].copy()
        return out


def one_euro(
    x: np.ndarray, mincutoff: float, beta: float, dcutoff: float = 1.0, freq: float = 100.0
) -> np.ndarray:
    """Filter along axis 0; returns float64 of x's shape. NaNs should be filled before."""
    return OneEuro(mincutoff, beta, dcutoff, freq)(x)
