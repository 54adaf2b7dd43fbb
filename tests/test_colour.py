"""Y'CbCr <-> R'G'B' by one cv2.transform against swscale and the textbook formula."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from eamm.video.colour import rgb_to_yuv444, yuv_to_rgb


def smooth_rgb(seed: int = 0) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    return cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : frame.width]
        for p in frame.planes
    ]


def textbook_rgb(y, u, v, kr: float, kb: float, full: bool) -> np.ndarray:
    """H.273's equations in float64, rounded to nearest."""
    yf, cb, cr = (a.astype(np.float64) for a in (y, u, v))
    cb, cr = cb - 128, cr - 128
    if not full:
        yf, cb, cr = (yf - 16) * 255 / 219, cb * 255 / 224, cr * 255 / 224
    r = yf + 2 * (1 - kr) * cr
    b = yf + 2 * (1 - kb) * cb
    g = (yf - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(int)


def test_rgb_to_yuv444_is_swscales_bt601_to_one_level():
    rgb = smooth_rgb()
    ours = rgb_to_yuv444(rgb)
    swscale = planes(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p"))
    for mine, theirs in zip(ours, swscale, strict=True):
        diff = mine.astype(int) - theirs
        assert mine.dtype == np.uint8 and mine.shape == (256, 256)
        assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.1


def test_yuv_to_rgb_inverts_it_and_matches_swscales_decode():
    rgb = smooth_rgb(1)
    y, u, v = rgb_to_yuv444(rgb)
    back = yuv_to_rgb(y, u, v)
    assert np.abs(back.astype(int) - rgb).max() <= 2  # two roundings through 8-bit YUV
    frame = av.VideoFrame(256, 256, "yuv444p")
    for plane, values in zip(planes(frame), (y, u, v), strict=True):
        plane[:] = values
    assert np.abs(back.astype(int) - frame.to_ndarray(format="rgb24")).max() <= 1


MATRICES = [
    (5, 0.299, 0.114),
    (1, 0.2126, 0.0722),
    (2, 0.299, 0.114),
    (4, 0.30, 0.11),
    (7, 0.212, 0.087),
    (9, 0.2627, 0.0593),
]


@pytest.mark.parametrize("matrix, kr, kb", MATRICES)
@pytest.mark.parametrize("full", [False, True])
def test_each_matrix_and_range_follows_the_equations(matrix, kr, kb, full):
    """BT.601 (5, 6), BT.709 (1), FCC (4), SMPTE 240M (7), BT.2020 non-constant luminance (9);
    unspecified (2) decodes as BT.601, as swscale does."""
    rng = np.random.default_rng(matrix)
    lo, hi = (0, 256) if full else (16, 236)
    y, u, v = (rng.integers(lo, hi, (64, 64), dtype=np.uint8) for _ in range(3))
    diff = yuv_to_rgb(y, u, v, matrix, full).astype(int) - textbook_rgb(y, u, v, kr, kb, full)
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.05  # float32 inside cv2


@pytest.mark.parametrize("matrix", [m for m, _, _ in MATRICES])
def test_each_tagged_matrix_decodes_as_swscale_decodes_it(matrix):
    """A frame tagged BT.2020 (an HDR phone clip's) decoded as BT.601, up to 5 levels off."""
    rng = np.random.default_rng(matrix)
    y, u, v = (rng.integers(16, 236, (64, 64), dtype=np.uint8) for _ in range(3))
    frame = av.VideoFrame(64, 64, "yuv444p")
    for plane, values in zip(planes(frame), (y, u, v), strict=True):
        plane[:] = values
    frame.colorspace = matrix
    swscale = frame.to_ndarray(format="rgb24").astype(int)
    assert np.abs(yuv_to_rgb(y, u, v, matrix).astype(int) - swscale).max() <= 1
