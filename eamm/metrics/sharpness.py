"""CPBD: no-reference sharpness, the Cumulative Probability of Blur Detection.

N. D. Narvekar and L. J. Karam, "A No-Reference Image Blur Metric Based on the Cumulative
Probability of Blur Detection (CPBD)", IEEE TIP 20(9), 2011; "CPBD Sharpness Metric Software",
http://ivulab.asu.edu/Quality/CPBD (Copyright (c) 2009-2010 Arizona Board of Regents, Image,
Video, and Usability Lab, Arizona State University).

The reference software's Python release is PyPI ``cpbd`` 1.0.7, the code talking-face
evaluations call (``cpbd-py312`` 1.0.3 is the same code importable on current Python). This is
a vectorised re-implementation that gives the same value as its ``cpbd.compute`` on an 8-bit
grey image (``tests/test_reference_metrics.py`` checks it to 1e-6 on real frames), including
the reference's particular choices, which differ from the paper's prose:

1. Edge blocks: the image is cut into 64x64 blocks; partial blocks at the right/bottom border
   are dropped. A block is an edge block if more than 0.2 % of its pixels are Canny edges
   (``skimage.feature.canny`` with its defaults on the 0-255 float image: sigma 1 and
   hysteresis thresholds 0.1 and 0.2 on the gradient magnitude, so on that scale almost every
   local gradient maximum is an edge).
2. Edge pixels for the width measurement are Sobel edges, not Canny's: the squared response of
   the horizontal-gradient Sobel kernel (normalised to a sum of absolute values of 1,
   ``scipy.ndimage.convolve``, reflected border), zeroed where it is <= 2 * sqrt(its mean)
   (Octave's ``edge`` threshold, compared with the *squared* response), then thinned: kept
   where strictly greater than both horizontal or both vertical neighbours (zero outside).
3. Edge direction from ``numpy.gradient`` (central differences), angle ``atan2(gy, gx)`` in
   degrees (0 where gx == 0), quantised to multiples of 45. Only interior pixels (not on the
   image border) with a quantised angle of 0 (rising left to right) or +-180 (falling) are
   measured; if every angle is 0 nothing is measured.
4. Edge width along the row (Marziliano et al. 2002): 1 + the length of the strictly
   monotonic run (in the edge's direction) that ends at column c - 1, plus 1 + the length of
   the run that starts at column c + 1, each run capped at 100 steps. The steps between c - 1,
   c and c + 1 themselves are not looked at, so every measured width is at least 2.
5. Just-noticeable blur width per block: 5 if ``int(max - min)`` of the block is <= 50, else 3.
   ``P = 1 - exp(-|w / w_JNB| ** 3.6)``, rounded to a percentage; CPBD is the fraction of
   the measured edge pixels in edge blocks whose percentage is <= 63 (``P_JNB`` = 63 %).

Higher is sharper; values lie in [0, 1]. An image without measured edges (e.g. a flat image)
scores 0.0, as in the reference.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import canny

BLOCK = 64
EDGE_BLOCK_FRACTION = 0.002
BETA = 3.6
P_JNB_PERCENT = 63  # the reference's histogram buckets 0..63 of round(100 * P)
CONTRAST_SPLIT = 50  # int(block max - min) on the 0-255 scale; <= 50: low contrast
W_JNB_LOW_CONTRAST = 5.0
W_JNB_HIGH_CONTRAST = 3.0
MAX_RUN = 100  # the reference stops following a monotonic run after 100 steps
# The reference's Sobel kernel: skimage's HSOBEL_WEIGHTS / sum(|.|), transposed (d/dx).
SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]) / 8.0
# PIL's "L" conversion (what the reference's command line reads a file with): ITU-R BT.601 luma
# in 16-bit fixed point, rounded.
LUMA_FIXED = np.array([19595, 38470, 7471], dtype=np.int64)


def _sobel_edges(img: np.ndarray) -> np.ndarray:
    """Thinned, thresholded vertical edges of the reference (its ``octave.sobel``)."""
    strength = np.square(ndimage.convolve(img, SOBEL_X))
    strength[strength <= 2.0 * np.sqrt(np.mean(strength))] = 0.0
    padded = np.pad(strength, 1)
    centre = padded[1:-1, 1:-1]
    across = (centre > padded[1:-1, :-2]) & (centre > padded[1:-1, 2:])
    along = (centre > padded[:-2, 1:-1]) & (centre > padded[2:, 1:-1])
    return across | along


def _run_ending_at(flags: np.ndarray) -> np.ndarray:
    """Per row: length of the run of True ending at (and including) each column."""
    cols = np.arange(flags.shape[1])
    last_false = np.maximum.accumulate(np.where(flags, -1, cols), axis=1)
    return cols - last_false


def _edge_widths(
    img: np.ndarray, rows: np.ndarray, cols: np.ndarray, rising: np.ndarray
) -> np.ndarray:
    """Marziliano widths at interior pixels (rows, cols) as the reference measures them.

    ``rising`` picks, per pixel, strictly increasing (True) or decreasing (False) steps.
    Step x is ``img[:, x + 1] - img[:, x]``; the left run ends at step c - 2 (pixels c - 2 to
    c - 1), the right run starts at step c + 1 (pixels c + 1 to c + 2).
    """
    step = np.diff(img, axis=1)
    widths = np.empty(rows.shape, dtype=np.float64)
    for flags, sel in ((step > 0, rising), (step < 0, ~rising)):
        # Zero-length runs beyond either end: the run before column 1 and after column W - 2.
        ending = np.pad(_run_ending_at(flags), ((0, 0), (1, 0)))  # ending[:, x + 1]: run to x
        starting = np.pad(_run_ending_at(flags[:, ::-1])[:, ::-1], ((0, 0), (0, 1)))
        r, c = rows[sel], cols[sel]
        left = np.minimum(ending[r, c - 1], MAX_RUN)
        right = np.minimum(starting[r, c + 1], MAX_RUN)
        widths[sel] = left + right + 2
    return widths


def cpbd(gray: np.ndarray, data_range: float = 255.0) -> float:
    """CPBD sharpness in [0, 1] of a 2-D grey image (see the module docstring).

    ``data_range`` is the span of the input's pixel scale (255 for uint8, 1.0 for float images
    in [0, 1]); the image is rescaled to 0-255 and rounded to 8-bit grey levels, so the value
    is the reference's ``cpbd.compute`` of the 8-bit grey image. A flat image, or one without
    measured edges, returns 0.0.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {gray.shape}")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range}")
    img = np.clip(np.round(gray.astype(np.float64) * (255.0 / data_range)), 0.0, 255.0)
    height, width = img.shape
    nby, nbx = height // BLOCK, width // BLOCK
    if img.max() == img.min() or nby == 0 or nbx == 0:
        return 0.0

    # Edge blocks (Canny) and their just-noticeable widths, full blocks only.
    crop = (slice(0, nby * BLOCK), slice(0, nbx * BLOCK))
    blocks = img[crop].reshape(nby, BLOCK, nbx, BLOCK)
    n_edges = canny(img)[crop].reshape(nby, BLOCK, nbx, BLOCK).sum(axis=(1, 3))
    edge_block = n_edges > BLOCK * BLOCK * EDGE_BLOCK_FRACTION
    contrast = (blocks.max(axis=(1, 3)) - blocks.min(axis=(1, 3))).astype(np.int64)
    w_jnb = np.where(contrast <= CONTRAST_SPLIT, W_JNB_LOW_CONTRAST, W_JNB_HIGH_CONTRAST)

    # Measured pixels: interior Sobel edges with a horizontal quantised gradient direction.
    gy, gx = np.gradient(img)
    # gx == 0 gives angle 0 (the reference's 90 for gy == pi / 2 cannot occur: 8-bit input).
    angle = np.where(gx != 0, np.arctan2(gy, gx) * (180 / np.pi), 0.0)
    if not angle.any():
        return 0.0
    quantised = 45 * np.round(angle / 45)
    rising, falling = quantised == 0, np.abs(quantised) == 180
    measured = _sobel_edges(img) & (rising | falling)
    measured[[0, -1], :] = False
    measured[:, [0, -1]] = False
    measured[nby * BLOCK :, :] = False
    measured[:, nbx * BLOCK :] = False
    rows, cols = np.nonzero(measured)
    keep = edge_block[rows // BLOCK, cols // BLOCK]
    rows, cols = rows[keep], cols[keep]
    if rows.size == 0:
        return 0.0

    widths = _edge_widths(img, rows, cols, rising[rows, cols])
    p_blur = 1 - np.exp(-(np.abs(widths / w_jnb[rows // BLOCK, cols // BLOCK]) ** BETA))
    return float(np.mean(np.round(p_blur * 100) <= P_JNB_PERCENT))


def to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> uint8 BT.601 grey, bit-identical to PIL's ``convert("L")``."""
    rgb = np.asarray(frames, dtype=np.int64)
    return ((rgb @ LUMA_FIXED + 0x8000) >> 16).astype(np.uint8)


def cpbd_clip(frames: np.ndarray) -> float:
    """Mean over frames of the CPBD of each frame's grey image; frames uint8 (T,H,W,3)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected (T, H, W, 3) RGB frames, got {frames.shape}")
    if frames.dtype != np.uint8:  # floats in [0, 1] scored 1.0, whatever the picture
        raise ValueError(f"expected uint8 frames (0..255), got {frames.dtype}")
    return float(np.mean([cpbd(to_gray(frame), data_range=255.0) for frame in frames]))
