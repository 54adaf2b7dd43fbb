"""CPBD: no-reference sharpness, the Cumulative Probability of Blur Detection.

Implemented from the published algorithm (N. D. Narvekar and L. J. Karam, "A No-Reference Image
Blur Metric Based on the Cumulative Probability of Blur Detection (CPBD)", IEEE TIP 20(9), 2011),
which builds on the just-noticeable-blur (JNB) model of Ferzli & Karam (IEEE TIP 2009) and the
edge width of Marziliano et al. (2002):

1. Edge pixels: Canny edge map (``skimage.feature.canny``, sigma 1, default hysteresis
   thresholds) of the grey image scaled to [0, 1]; gradients: Sobel.
2. The image is cut into 64x64 blocks (partial blocks at the right/bottom border included);
   a block is an edge block if more than 0.2 % of its pixels are edge pixels.
3. For each edge pixel of an edge block whose edge is vertical (Sobel gradient within 45 degrees
   of horizontal), the edge width is measured along the row, i.e. along the quantised gradient
   direction: the number of pixels between the local extrema on either side of the edge pixel
   (the extent of the monotonic intensity run through it). Edges closer to horizontal are
   not measured, as in Marziliano's method; zero widths (no monotonic run) are skipped.
4. The block's just-noticeable blur width is ``w_JNB = 5`` for block contrast <= 50 and 3 for
   contrast > 50 (contrast = max - min of the block on the 0-255 scale).
5. Probability of blur detection ``P = 1 - exp(-|w / w_JNB| ** 3.6)``; CPBD is the fraction of
   measured edge pixels with ``P <= P_JNB = 63 %``, i.e. the cumulative probability
   ``P(P_blur <= P_JNB)``.

Higher is sharper; values lie in [0, 1]. An image without measurable edges (e.g. a flat image)
scores 0.0: there is no evidence of sharpness in it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import canny

BLOCK = 64
EDGE_BLOCK_FRACTION = 0.002
BETA = 3.6
P_JNB = 0.63
CONTRAST_SPLIT = 50.0  # on the 0-255 scale
W_JNB_LOW_CONTRAST = 5.0
W_JNB_HIGH_CONTRAST = 3.0
# ITU-R BT.601 luma, as PIL's "L" mode and OpenCV's RGB2GRAY.
LUMA = np.array([0.299, 0.587, 0.114])


def _run_ending_at(flags: np.ndarray) -> np.ndarray:
    """Per row: length of the run of True ending at (and including) each column."""
    cols = np.arange(flags.shape[1])
    last_false = np.maximum.accumulate(np.where(flags, -1, cols), axis=1)
    return cols - last_false


def _monotonic_widths(img: np.ndarray, rising: np.ndarray) -> np.ndarray:
    """Width (pixels) of the monotonic run through each pixel along its row.

    ``rising`` picks, per pixel, an increasing (True) or decreasing (False) run: the distance
    from the local minimum on one side to the local maximum on the other (or the reverse).
    """
    height, width = img.shape
    step = np.diff(img, axis=1)  # step[:, x] = img[:, x + 1] - img[:, x]
    out = np.zeros((height, width), dtype=np.int64)
    for flags, sel in ((step > 0, rising), (step < 0, ~rising)):
        left = np.zeros((height, width), dtype=np.int64)
        left[:, 1:] = _run_ending_at(flags)  # steps x-1 -> x, x-2 -> x-1, ...
        right = np.zeros((height, width), dtype=np.int64)
        right[:, :-1] = _run_ending_at(flags[:, ::-1])[:, ::-1]  # steps x -> x+1, ...
        out[sel] = (left + right)[sel]
    return out


def cpbd(gray: np.ndarray, data_range: float = 255.0) -> float:
    """CPBD sharpness in [0, 1] of a 2-D grey image (see the module docstring).

    ``data_range`` is the span of the input's pixel scale (255 for uint8, 1.0 for float images
    in [0, 1]); the image is rescaled to 0-255 and rounded to 8-bit grey levels, the scale on
    which the contrast rule and the edge widths are defined (equal neighbouring levels end a
    monotonic run). A flat image, or one without measurable edges, returns 0.0.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {gray.shape}")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range}")
    # The metric is defined on 8-bit grey levels: a plateau of equal levels ends an edge.
    img = np.clip(np.round(gray.astype(np.float64) * (255.0 / data_range)), 0.0, 255.0)
    if img.max() == img.min():
        return 0.0
    edges = canny(img / 255.0, sigma=1.0)
    if not edges.any():
        return 0.0
    gx = ndimage.sobel(img, axis=1)
    gy = ndimage.sobel(img, axis=0)

    height, width = img.shape
    nby, nbx = -(-height // BLOCK), -(-width // BLOCK)
    pad = ((0, nby * BLOCK - height), (0, nbx * BLOCK - width))
    # Per-block edge fraction and contrast (padding excluded from both).
    inside = np.pad(np.ones_like(edges), pad).reshape(nby, BLOCK, nbx, BLOCK)
    area = inside.sum(axis=(1, 3))
    n_edges = np.pad(edges, pad).reshape(nby, BLOCK, nbx, BLOCK).sum(axis=(1, 3))
    blocks_hi = np.pad(img, pad, constant_values=-np.inf).reshape(nby, BLOCK, nbx, BLOCK)
    blocks_lo = np.pad(img, pad, constant_values=np.inf).reshape(nby, BLOCK, nbx, BLOCK)
    contrast = blocks_hi.max(axis=(1, 3)) - blocks_lo.min(axis=(1, 3))
    edge_block = n_edges > EDGE_BLOCK_FRACTION * area
    w_jnb = np.where(contrast > CONTRAST_SPLIT, W_JNB_HIGH_CONTRAST, W_JNB_LOW_CONTRAST)

    rows, cols = np.nonzero(edges & (np.abs(gx) >= np.abs(gy)) & (gx != 0))
    by, bx = rows // BLOCK, cols // BLOCK
    keep = edge_block[by, bx]
    rows, cols, by, bx = rows[keep], cols[keep], by[keep], bx[keep]
    widths = _monotonic_widths(img, gx > 0)[rows, cols]
    measured = widths > 0
    if not measured.any():
        return 0.0
    ratio = widths[measured] / w_jnb[by[measured], bx[measured]]
    p_blur = 1.0 - np.exp(-(np.abs(ratio) ** BETA))
    return float(np.mean(p_blur <= P_JNB))


def to_gray(frames: np.ndarray) -> np.ndarray:
    """RGB (..., 3) on the 0-255 scale -> float64 BT.601 luma on the same scale."""
    return np.asarray(frames, dtype=np.float64) @ LUMA


def cpbd_clip(frames: np.ndarray) -> float:
    """Mean over frames of the CPBD of each frame's BT.601 grey image; frames uint8 (T,H,W,3)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected (T, H, W, 3) RGB frames, got {frames.shape}")
    return float(np.mean([cpbd(to_gray(frame), data_range=255.0) for frame in frames]))
