"""Y'CbCr <-> R'G'B' on uint8 images as one ``cv2.transform`` (a 3x4 matrix per pixel).

About 0.05-0.08 ms for a 256 crop where NumPy floats took 0.35 ms and swscale's RGB -> YUV 4:4:4
0.70 ms (this project's crops are converted twice per frame: the warp's YUV -> RGB for the face
mesh, and the encoder's RGB -> YUV). Results agree with those paths to one level (cv2 rounds
half to even). Untagged video is BT.601 limited range, as swscale and every decoder assume.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# (Kr, Kb) per H.273 matrix coefficients: BT.709, FCC, BT.601 (5, 6), SMPTE 240M and BT.2020
# non-constant luminance (HDR phone video; it decoded as BT.601, up to 5 levels off); anything
# else decodes as BT.601, as swscale does.
COEFFS = {
    1: (0.2126, 0.0722),
    4: (0.30, 0.11),
    5: (0.299, 0.114),
    6: (0.299, 0.114),
    7: (0.212, 0.087),
    9: (0.2627, 0.0593),
}
BT601 = 5


def rgb_from_yuv_matrix(matrix: int = BT601, full: bool = False) -> np.ndarray:
    """3x4 map (Y, Cb, Cr, 1) -> (R, G, B) in 0..255 levels."""
    kr, kb = COEFFS.get(matrix, COEFFS[BT601])
    kg = 1.0 - kr - kb
    ys, cs = (1.0, 1.0) if full else (255.0 / 219.0, 255.0 / 224.0)
    y0 = 0.0 if full else 16.0
    # rows of R, G, B per unit of (Y - y0), (Cb - 128), (Cr - 128)
    rows = np.array(
        [
            [ys, 0.0, 2 * (1 - kr) * cs],
            [ys, -2 * (1 - kb) * kb / kg * cs, -2 * (1 - kr) * kr / kg * cs],
            [ys, 2 * (1 - kb) * cs, 0.0],
        ]
    )
    offset = -rows @ np.array([y0, 128.0, 128.0])
    return np.hstack([rows, offset[:, None]])


_rgb_from_yuv = functools.cache(rgb_from_yuv_matrix)  # callers never write the matrices
_YUV_FROM_RGB = np.linalg.inv(np.vstack([rgb_from_yuv_matrix(), [0, 0, 0, 1]]))[:3]


def yuv_to_rgb(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, matrix: int = BT601, full: bool = False
) -> np.ndarray:
    """(H, W, 3) RGB uint8 from three (H, W) uint8 planes of the same size."""
    to_rgb = _rgb_from_yuv(matrix if matrix in COEFFS else BT601, full)
    return cv2.transform(cv2.merge([y, u, v]), to_rgb)


def rgb_to_yuv444(rgb: np.ndarray) -> tuple[np.ndarray, ...]:
    """(Y, Cb, Cr) uint8 planes, BT.601 limited range, of an (H, W, 3) RGB uint8 image."""
    return tuple(cv2.split(cv2.transform(np.ascontiguousarray(rgb), _YUV_FROM_RGB)))
