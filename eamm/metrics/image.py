"""Full-reference image metrics (PSNR, SSIM) for generated clips against ground truth.

One pinned protocol (field notes 1.3 / 6): frames are compared in RGB at the resolution given,
per frame, then averaged over frames; ``data_range`` is always explicit (255 for uint8 frames,
1.0 for float frames in [0, 1]) because scikit-image's inference of it for float input has
changed between releases and moved published SSIM values.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

# Per-frame MSE floor, relative to data_range**2: caps a frame's PSNR at 100 dB.
MSE_FLOOR = 1e-10
PSNR_CAP_DB = 10.0 * math.log10(1.0 / MSE_FLOOR)

# SSIM settings of Wang et al. (IEEE TIP 2004): 11x11 Gaussian window with sigma 1.5,
# population (not sample) covariance, K1 = 0.01, K2 = 0.03 (scikit-image defaults).
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
# scikit-image's defaults, what ``compare_ssim(a, b, multichannel=True)`` ran in EAT's
# evaluation: a 7x7 uniform window and sample covariance.
SSIM_UNIFORM7 = {"win_size": 7, "gaussian_weights": False, "use_sample_covariance": True}
SSIM_WINDOWS = {"gaussian": SSIM_SETTINGS, "uniform7": SSIM_UNIFORM7}


def _as_clips(pred: np.ndarray, target: np.ndarray, data_range: float) -> tuple[np.ndarray, ...]:
    """Both inputs as float64 (T, H, W, 3) clips, after checking shapes and data_range."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs target {target.shape}")
    if pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) frames or (T, H, W, 3) clips, got {pred.shape}")
    if pred.ndim == 4 and pred.shape[0] == 0:
        raise ValueError("empty clip (0 frames)")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range}")
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    return pred.astype(np.float64), target.astype(np.float64)


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of a frame (H, W, 3) or clip (T, H, W, 3).

    Per frame: ``10 * log10(data_range**2 / MSE)`` with MSE over all pixels and channels, then
    the mean over frames. ``data_range`` is the span of the pixel scale: 255 for uint8 frames,
    1.0 for float frames in [0, 1]; it is never inferred.

    Identical frames have infinite PSNR. So that one identical frame cannot make a whole clip
    infinite, each frame's MSE is floored at ``1e-10 * data_range**2``, i.e. a frame's PSNR is
    capped at 100 dB, and the clip value is the mean of the capped per-frame values: 100 dB
    for identical clips (``inf`` there was left out of the mean over clips, as a clip without
    a face is).
    """
    p, t = _as_clips(pred, target, data_range)
    mse = ((p - t) ** 2).reshape(len(p), -1).mean(axis=1)
    floored = np.maximum(mse, MSE_FLOOR * data_range**2)
    return float(np.mean(10.0 * np.log10(data_range**2 / floored)))


def ssim(
    pred: np.ndarray, target: np.ndarray, data_range: float = 255.0, window: str = "gaussian"
) -> float:
    """Mean structural similarity of a frame (H, W, 3) or clip (T, H, W, 3).

    Per frame: ``skimage.metrics.structural_similarity`` over the colour channels
    (``channel_axis=-1``, mean of the per-channel SSIM) with the explicit ``data_range`` (255
    for uint8, 1.0 for float in [0, 1]); then the mean over frames. ``window``: ``gaussian``
    is Wang et al. 2004 (Gaussian window sigma 1.5, ``use_sample_covariance=False``; frames
    at least 11 px on each side), ``uniform7`` scikit-image's defaults (``SSIM_UNIFORM7``).
    """
    if window not in SSIM_WINDOWS:
        raise ValueError(f"unknown SSIM window {window!r} (known: {', '.join(SSIM_WINDOWS)})")
    p, t = _as_clips(pred, target, data_range)
    settings = SSIM_WINDOWS[window]
    values = [
        structural_similarity(a, b, channel_axis=-1, data_range=data_range, **settings)
        for a, b in zip(p, t, strict=True)
    ]
    return float(np.mean(values))
