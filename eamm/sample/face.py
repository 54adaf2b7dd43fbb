"""Animate a real face photograph: head motion plus a mouth that opens with the speech.

The photo is scikit-image's ``astronaut`` (NASA, public domain). Landmark positions below were
measured once with mediapipe face mesh on the 512x512 original; they only steer the synthetic
mouth and framing, nothing downstream reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

SOURCE_SIZE = 512
FACE_CENTER = (224.0, 124.0)  # between the eyes and the mouth, source pixels
LIP_LINE_Y = 147.0  # between the inner upper and lower lip
MOUTH_X = 224.0
MOUTH_HALF_WIDTH = 21.0
FACE_HEIGHT = 103.0  # forehead (y 72) to chin (y 175)
MAX_OPEN_PX = 12.0


@cache
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@dataclass(frozen=True)
class Identity:
    """A look derived from the one photo, so the sample can hold several 'speakers'."""

    flip: bool = False
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    background: tuple[int, int, int] = (128, 128, 128)

    def source(self) -> np.ndarray:
        img = astronaut().astype(np.float32) * np.asarray(self.tint, dtype=np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(img[:, ::-1]) if self.flip else img

    def x(self, x: float) -> float:
        return SOURCE_SIZE - 1 - x if self.flip else x


IDENTITIES = (
    Identity(),
    Identity(flip=True, tint=(1.05, 0.97, 0.9), background=(150, 140, 120)),
    Identity(tint=(0.92, 1.0, 1.08), background=(95, 110, 125)),
    Identity(flip=True, tint=(1.0, 0.92, 0.95), background=(170, 170, 170)),
)


def open_mouth(src: np.ndarray, identity: Identity, amount: float) -> np.ndarray:
    """Move the lower lip and jaw down by ``amount`` (0..1) and darken the gap."""
    gap = float(np.clip(amount, 0.0, 1.0)) * MAX_OPEN_PX
    if gap < 0.25:
        return src
    cx = identity.x(MOUTH_X)
    x0, x1 = int(cx - 50), int(cx + 51)
    y0, y1 = int(LIP_LINE_Y - 10), int(LIP_LINE_Y + 60)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    across = np.exp(-(((xs - cx) / (MOUTH_HALF_WIDTH * 1.3)) ** 2))
    below = np.clip((ys - LIP_LINE_Y) / 2.0, 0, 1) * np.clip((y1 - ys) / 25.0, 0, 1)
    shift = gap * across * below
    out = src.copy()
    roi = cv2.remap(src, xs, ys - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ellipse = ((xs - cx) / (MOUTH_HALF_WIDTH * 0.85)) ** 2 + (
        (ys - LIP_LINE_Y - gap / 2) / (gap / 2 + 0.5)
    ) ** 2
    inside = np.clip(1.5 - ellipse, 0, 1)[..., None]
    interior = np.array([70, 25, 30], dtype=np.float32)
    out[y0:y1, x0:x1] = (roi * (1 - inside) + interior * inside).astype(np.uint8)
    return out


@dataclass(frozen=True)
class Framing:
    """Where the face lands in the output frame and how tall it is."""

    width: int
    height: int
    center: tuple[float, float]
    face_height: float


def render(
    src: np.ndarray,
    identity: Identity,
    framing: Framing,
    angle_deg: float,
    shift: tuple[float, float],
    scale: float,
) -> np.ndarray:
    """Place the (mouth-edited) photo in the output frame with a similarity transform."""
    zoom = framing.face_height / FACE_HEIGHT * scale
    center = (identity.x(FACE_CENTER[0]), FACE_CENTER[1])
    matrix = cv2.getRotationMatrix2D(center, angle_deg, zoom)
    matrix[0, 2] += framing.center[0] + shift[0] - center[0]
    matrix[1, 2] += framing.center[1] + shift[1] - center[1]
    return cv2.warpAffine(
        src,
        matrix,
        (framing.width, framing.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=identity.background,
    )
