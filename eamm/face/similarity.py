"""2-D similarity transforms (rotation + uniform scale + translation), least squares.

Same estimate as scikit-image's ``SimilarityTransform`` (Umeyama), which EAMM used, in a few
lines of numpy so the hot path needs no per-call object construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Similarity:
    """x' = scale * R(angle) x + (tx, ty); maps template (crop) coordinates to frame coordinates."""

    scale: float
    angle_rad: float
    tx: float
    ty: float

    @property
    def matrix(self) -> np.ndarray:
        c, s = np.cos(self.angle_rad) * self.scale, np.sin(self.angle_rad) * self.scale
        return np.array([[c, -s, self.tx], [s, c, self.ty]], dtype=np.float64)

    def apply(self, points: np.ndarray) -> np.ndarray:
        m = self.matrix
        return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def inverse(self) -> Similarity:
        inv = np.linalg.inv(np.vstack([self.matrix, [0, 0, 1]]))[:2]
        return Similarity.from_matrix(inv)

    @staticmethod
    def from_matrix(m: np.ndarray) -> Similarity:
        return Similarity(
            float(np.hypot(m[0, 0], m[1, 0])),
            float(np.arctan2(m[1, 0], m[0, 0])),
            float(m[0, 2]),
            float(m[1, 2]),
        )


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity mapping ``src`` points onto ``dst`` points (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sig) @ sign) / s0.var(0).sum())
    t = mu_d - scale * rot @ mu_s
    return Similarity(scale, float(np.arctan2(rot[1, 0], rot[0, 0])), float(t[0]), float(t[1]))


def median_similarity(transforms: list[Similarity]) -> Similarity:
    """Element-wise median of several per-frame estimates: robust to one bad frame."""
    params = np.array([[t.scale, t.angle_rad, t.tx, t.ty] for t in transforms])
    return Similarity(*(float(v) for v in np.median(params, axis=0)))
