"""Head pose rows in EAMM's 3DDFA_V2 format from one face-mesh pass.

The rotation comes from a face-fixed frame built from the mesh's 3-D vertices: x along the mean
of seven left-right symmetric vertex pairs, y from chin to forehead and from the nose base to the
bridge (orthogonalised), z = x cross y. Camera axes follow 3DDFA (x right, y up, z toward the
viewer), and the Euler decomposition is 3DDFA's ``matrix2angle``:
yaw = asin(R[2,0]), pitch = atan2(R[2,1], R[2,2]), roll = atan2(R[1,0], R[0,0]), in degrees.
On EAMM's fixtures (9 portraits, 29 LRW frames) this agrees with the released 3DDFA rows within
0.7 / 1.8 / 0.3 degrees mean absolute error (yaw / pitch / roll) with no offset.

Scale, tx and ty have no exact 3DDFA counterpart (3DDFA measures them in a 120x120 face-box ROI
with the BFM model's units). We express them proportionally to our own measurements, with factors
fitted once on EAMM's released rows so values sit in the range EAMM's networks were trained on:
scale = SCALE_PER_PX * outer-eye-corner distance (crop px), tx = TX_PER_PX * mesh centre x,
ty = TY_PER_PX * mesh centre y. tz is the constant EAMM's rows carry (it has no meaning under
3DDFA's orthographic projection).
"""

from __future__ import annotations

import numpy as np

SYMMETRIC_PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300), (172, 397), (127, 356))
# the vertices the rotation uses, gathered once: 7 left, 7 right, forehead, chin, bridge, base
_AXES = [p[0] for p in SYMMETRIC_PAIRS] + [p[1] for p in SYMMETRIC_PAIRS] + [10, 152, 168, 2]
_FLIP = np.array([1.0, -1.0, -1.0])
SCALE_PER_PX = 5.632e-6
TX_PER_PX = 0.4585
TY_PER_PX = 0.4943
TZ = -66.671


def rotation_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """3x3 rotation whose columns are the face axes in 3DDFA camera coordinates."""
    pts = np.asarray(mesh)[_AXES, :3].astype(np.float64) * _FLIP
    x = (pts[7:14] - pts[:7]).mean(axis=0)
    x /= np.linalg.norm(x)
    y = (pts[[14, 16]] - pts[[15, 17]]).mean(axis=0)
    y -= y.dot(x) * x
    y /= np.linalg.norm(y)
    z = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]]
    return np.array([x, y, z]).T  # x cross y written out: np.cross costs 3x the rest here


def euler_3ddfa(rot: np.ndarray) -> tuple[float, float, float]:
    """3DDFA_V2's matrix2angle, including its gimbal-lock branches; degrees."""
    if abs(rot[2, 0]) < 0.998:
        yaw = np.arcsin(rot[2, 0])
        cos = np.cos(yaw)
        pitch = np.arctan2(rot[2, 1] / cos, rot[2, 2] / cos)
        roll = np.arctan2(rot[1, 0] / cos, rot[0, 0] / cos)
    else:
        roll = 0.0
        if rot[2, 0] > 0:
            yaw, pitch = np.pi / 2, roll + np.arctan2(rot[0, 1], rot[0, 2])
        else:
            yaw, pitch = -np.pi / 2, -roll + np.arctan2(-rot[0, 1], -rot[0, 2])
    return tuple(float(np.degrees(v)) for v in (yaw, pitch, roll))  # type: ignore[return-value]


def pose_row(mesh: np.ndarray) -> np.ndarray:
    """(7,) float32 ``[yaw, pitch, roll, scale, tx, ty, tz]`` from (468, 3) mesh vertices in px."""
    mesh = np.asarray(mesh, dtype=np.float64)
    yaw, pitch, roll = euler_3ddfa(rotation_from_mesh(mesh))
    eye_dist = float(np.linalg.norm(mesh[33, :3] - mesh[263, :3]))
    cx, cy = mesh[:, 0].mean(), mesh[:, 1].mean()
    row = [yaw, pitch, roll, SCALE_PER_PX * eye_dist, TX_PER_PX * cx, TY_PER_PX * cy, TZ]
    return np.array(row, dtype=np.float32)
