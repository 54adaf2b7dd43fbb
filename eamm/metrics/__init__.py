"""Evaluation metrics for generated talking-face clips: PSNR, SSIM, CPBD and landmark distance."""

from eamm.metrics.image import psnr, ssim
from eamm.metrics.landmarks import FACE, MOUTH, clip_landmarks, lmd
from eamm.metrics.sharpness import cpbd, cpbd_clip

__all__ = ["FACE", "MOUTH", "clip_landmarks", "cpbd", "cpbd_clip", "lmd", "psnr", "ssim"]
