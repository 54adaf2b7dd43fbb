"""Mediapipe face mesh (468 vertices) to the 68 iBUG/dlib points EAMM's template uses.

One mesh vertex per iBUG point, in iBUG order. The face-contour (jaw) vertices follow the mesh
silhouette; nose bridge and mouth use midline vertices. Checked on EAMM's dlib-aligned LRW frames
against ``M003_template.npy``: the similarity fitted on points 0..46 is the identity within
2.5 % scale, 0.7 degrees and 0.6 px (tests/test_face.py re-checks this).
"""

from __future__ import annotations

import numpy as np

_JAW = [162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389]
_BROWS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # right brow, then left brow
_NOSE = [168, 6, 195, 4, 75, 97, 2, 326, 305]  # bridge 27-30, nostrils 31-35
_EYES = [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]  # from outer corners, as dlib
_LIPS = [61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87]
# 0-16 jaw from the subject's right ear (image left) to the left ear; 48-59 outer, 60-67 inner lips
MESH_TO_IBUG68 = np.array([*_JAW, *_BROWS, *_NOSE, *_EYES, *_LIPS], dtype=np.int64)

ALIGN_POINTS = slice(0, 47)  # EAMM: everything but the mouth and the last right-eye point
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
MOUTH = slice(48, 68)


def from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(468, >=2) mesh vertices in pixels -> (68, 2) iBUG points."""
    return np.asarray(mesh)[MESH_TO_IBUG68, :2]


def eye_and_mouth_centres(points68: np.ndarray) -> np.ndarray:
    """(3, 2): right eye centre, left eye centre, mouth centre (means of their iBUG points)."""
    pts = np.asarray(points68, dtype=np.float64)
    return np.stack([pts[RIGHT_EYE].mean(0), pts[LEFT_EYE].mean(0), pts[MOUTH].mean(0)])
