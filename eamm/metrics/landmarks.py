"""Landmark distance (LMD) between generated and ground-truth clips.

Landmarks are the 68 iBUG points from the same landmarker as preprocessing (mediapipe face mesh
mapped by ``eamm.face.ibug68.from_mesh``), in pixels at the evaluation resolution; a frame
without a face is a row of NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from eamm.face.ibug68 import from_mesh

if TYPE_CHECKING:
    from eamm.face.landmarks import FaceModels

MOUTH = slice(48, 68)  # M-LMD: outer and inner lips
FACE = slice(0, 68)  # F-LMD: all 68 points


def lmd(
    pred_landmarks: np.ndarray,
    target_landmarks: np.ndarray,
    points: slice | np.ndarray,
    centred: bool = False,
) -> float:
    """Mean Euclidean distance (pixels) between corresponding landmarks of two clips.

    Inputs are (T, 68, 2); ``points`` selects the points (``MOUTH`` for M-LMD, ``FACE`` for
    F-LMD). A frame counts only if all selected points are finite on both sides (a NaN marks
    "no face"); the result is the mean over valid frames and selected points, or NaN when no
    frame is valid. ``centred``: each side's selected points are first moved so that their
    mean is at the origin, per frame (EAT's ``test_lmd.py``: a shape distance, blind to where
    the mouth or face is in the crop).
    """
    pred = np.asarray(pred_landmarks, dtype=np.float64)
    target = np.asarray(target_landmarks, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch: pred {pred.shape} vs target {target.shape}")
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"expected (T, N, 2) landmarks, got {pred.shape}")
    pred, target = pred[:, points], target[:, points]
    if centred:
        pred = pred - pred.mean(axis=1, keepdims=True)
        target = target - target.mean(axis=1, keepdims=True)
    valid = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(target).all(axis=(1, 2))
    if not valid.any() or pred.shape[1] == 0:
        return float("nan")
    dist = np.linalg.norm(pred[valid] - target[valid], axis=-1)
    return float(dist.mean())


def clip_landmarks(frames: np.ndarray, models: FaceModels) -> np.ndarray:
    """(T, 68, 2) iBUG points of the RGB uint8 clip (T, H, W, 3); NaN rows where no face.

    ``models`` is an ``eamm.face.landmarks.FaceModels``: its tracking mesh is reset, then run on
    each frame in order, as in preprocessing.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) RGB frames, got {frames.shape}")
    out = np.full((len(frames), 68, 2), np.nan, dtype=np.float64)
    models.reset_tracking()
    for i, frame in enumerate(frames):
        mesh = models.track(np.ascontiguousarray(frame, dtype=np.uint8))
        if mesh is not None:
            out[i] = from_mesh(mesh)
    return out
