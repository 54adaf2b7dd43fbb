"""EAMM's clip augmentations (reference 3.6), on uint8 RGB clips (T, H, W, 3).

Geometry is given for 256x256 crops and scaled to the clip's size. Each function takes the
random generator, so a sample is reproducible from its seed.
"""

from __future__ import annotations

import cv2
import numpy as np

MOUTH_BOX_256 = (85, 160, 185, 220)  # x0, y0, x1, y1: covers the template mouth


def mouth_noise(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace the mouth rectangle by fresh uniform noise in every frame."""
    out = clip.copy()
    scale = clip.shape[2] / 256
    x0, y0, x1, y1 = (round(v * scale) for v in MOUTH_BOX_256)
    out[:, y0:y1, x0:x1] = rng.integers(0, 256, out[:, y0:y1, x0:x1].shape, dtype=np.uint8)
    return out


def random_flip(clip: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    return np.ascontiguousarray(clip[:, :, ::-1]) if rng.random() < p else clip


def random_rotation(clip: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """One angle for the whole clip, about the centre, black fill."""
    h, w = clip.shape[1:3]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-degrees, degrees)), 1.0)
    return np.stack([cv2.warpAffine(f, matrix, (w, h), borderValue=0) for f in clip])


def random_stretch(clip: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """One random width and height scale in [1 - amount, 1 + amount] each, and a shift of up
    to ``amount`` / 2 of the size, for the whole clip (edges replicated): face shapes vary."""
    if amount <= 0:
        return clip
    h, w = clip.shape[1:3]
    sx, sy = rng.uniform(1 - amount, 1 + amount, 2)
    dx, dy = rng.uniform(-amount / 2, amount / 2, 2) * (w, h)
    matrix = np.float32([[sx, 0, (1 - sx) * w / 2 + dx], [0, sy, (1 - sy) * h / 2 + dy]])
    return np.stack(
        [cv2.warpAffine(f, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE) for f in clip]
    )


def random_blur(clip: np.ndarray, rng: np.random.Generator, max_sigma: float) -> np.ndarray:
    """One Gaussian blur for the whole clip, sigma uniform in [0, ``max_sigma``] as a fraction
    of the frame width: an expression judge must read expressions, not sharpness, to score a
    generator's softer frames."""
    if max_sigma <= 0:
        return clip
    sigma = rng.uniform(0, max_sigma) * clip.shape[2]
    if sigma < 0.3:  # below a third of a pixel the kernel is the identity
        return clip
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in clip])


def random_perspective(
    clip: np.ndarray, rng: np.random.Generator, shift: int = 30, expand: int = 40
) -> np.ndarray:
    """Per-frame keystone: corners pushed out by e, bottom corners moved by +-p (x only)."""
    h, w = clip.shape[1:3]
    scale = w / 256
    frames = []
    for frame in clip:
        p = rng.integers(20, shift) * rng.choice([-1, 1]) * scale
        e = rng.integers(20, expand) * rng.choice([-1, 1]) * scale
        src = np.float32([[-e, -e], [w + e, -e], [w + e, h + e], [-e, h + e]])
        dst = src.copy()
        dst[2, 0] += p
        dst[3, 0] -= p
        matrix = cv2.getPerspectiveTransform(src, dst)
        frames.append(cv2.warpPerspective(frame, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return np.stack(frames)


def color_jitter(clip: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast, saturation in [1-v, 1+v] and hue in [-v, v], one parameter set
    for the clip, applied in random order (as torchvision's ColorJitter on PIL images)."""
    if amount <= 0:
        return clip
    x = clip.astype(np.float32)
    ops = ["brightness", "contrast", "saturation", "hue"]
    for op in rng.permutation(ops):
        if op == "hue":
            shift = rng.uniform(-amount, amount) * 180
            hsv = np.stack(
                [cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV) for f in x]
            ).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + shift) % 180
            x = np.stack([cv2.cvtColor(f.astype(np.uint8), cv2.COLOR_HSV2RGB) for f in hsv])
            x = x.astype(np.float32)
            continue
        factor = rng.uniform(1 - amount, 1 + amount)
        gray = x @ np.float32([0.299, 0.587, 0.114])
        if op == "brightness":
            x = x * factor
        elif op == "contrast":
            x = (x - gray.mean()) * factor + gray.mean()
        else:
            x = (x - gray[..., None]) * factor + gray[..., None]
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def emotion_augment(
    clip: np.ndarray,
    rng: np.random.Generator,
    rotation: float = 30.0,
    shift: int = 30,
    expand: int = 40,
) -> np.ndarray:
    """Stage 3: mouth noise, flip, rotation, perspective (keeps mouth, pose and identity
    geometry from leaking into the emotion branch)."""
    clip = mouth_noise(clip, rng)
    clip = random_flip(clip, rng)
    clip = random_rotation(clip, rng, rotation)
    return random_perspective(clip, rng, shift, expand)
