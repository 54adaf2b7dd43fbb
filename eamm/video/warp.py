"""Warp a decoded frame straight to a small RGB crop.

For planar YUV frames each plane is warped to the crop size first and only the crop is
converted to RGB, so a 1080p frame is never colour-converted or copied as a whole.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

from eamm.video.colour import yuv_to_rgb
from eamm.video.hdr import hdr_to_sdr, hdr_transfer

_PLANAR = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    buf = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
    return buf[:, : plane.width]


def _plane_matrix(crop_to_frame: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Crop -> plane coordinates for a plane subsampled by (sx, sy), centre-sited samples."""
    m = crop_to_frame.copy()
    m[0] = (m[0] + [0, 0, 0.5]) / sx - [0, 0, 0.5]
    m[1] = (m[1] + [0, 0, 0.5]) / sy - [0, 0, 0.5]
    return m


def warp_to_crop(frame: av.VideoFrame, crop_to_frame: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) RGB uint8 crop; ``crop_to_frame`` is the 2x3 map from crop to frame pixels.

    Pixels outside the frame are black, as EAMM's skimage warp gives. An HDR frame's crop is
    tone-mapped to SDR (``eamm.video.hdr``).
    """
    crop = _warp(frame, crop_to_frame, size)
    transfer = hdr_transfer(frame)
    return crop if transfer is None else hdr_to_sdr(crop, transfer)


def _warp(frame: av.VideoFrame, crop_to_frame: np.ndarray, size: int) -> np.ndarray:
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    fmt = frame.format.name
    if fmt not in _PLANAR:
        rgb = frame.to_ndarray(format="rgb24")
        return cv2.warpAffine(rgb, crop_to_frame, (size, size), flags=flags, borderValue=0)
    full = fmt.startswith("yuvj") or getattr(frame, "color_range", 1) == 2
    planes = [_plane(p) for p in frame.planes[:3]]
    black = (0 if full else 16, 128, 128)
    out = []
    for plane, fill in zip(planes, black, strict=True):
        sx = frame.width / plane.shape[1]
        sy = frame.height / plane.shape[0]
        m = crop_to_frame if sx == sy == 1 else _plane_matrix(crop_to_frame, sx, sy)
        out.append(cv2.warpAffine(plane, m, (size, size), flags=flags, borderValue=fill))
    return yuv_to_rgb(*out, matrix=int(getattr(frame, "colorspace", 2) or 2), full=full)


def resize_rgb(frame: av.VideoFrame, width: int) -> np.ndarray:
    """A small RGB copy for face detection (scaled and converted in one swscale pass; an HDR
    frame's tone-mapped to SDR)."""
    height = max(2, round(frame.height * width / frame.width))
    small = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    transfer = hdr_transfer(frame)
    return small if transfer is None else hdr_to_sdr(small, transfer)
