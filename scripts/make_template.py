"""Regenerate eamm/face/data/template68.npy, the project's own 68-point alignment template.

Source: mediapipe's face mesh of scikit-image's public-domain ``astronaut`` photo, rotated to a
frontal view with the face frame of eamm.face.pose and projected orthographically; the 68 iBUG
points are then placed in the 256x256 crop by the affine map that puts the two eye centres and
the mouth centre (means of iBUG 36-41, 42-47, 48-67) exactly where EAMM's M003 template has them
(reference section 1.1: (106.3, 113.0), (165.5, 113.5), (138.6, 180.4)), so our crops frame the
face as EAMM's do while the face shape is our own.

Usage: python scripts/make_template.py [OUT.npy]
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from eamm.face.ibug68 import eye_and_mouth_centres, from_mesh
from eamm.face.landmarks import FaceModels
from eamm.face.pose import rotation_from_mesh
from eamm.face.template import DEFAULT_TEMPLATE
from eamm.sample.face import astronaut

EAMM_CENTRES = np.array([[106.3, 113.0], [165.5, 113.5], [138.6, 180.4]])


def build_template() -> np.ndarray:
    models = FaceModels()
    mesh = models.mesh(astronaut())
    models.close()
    if mesh is None:
        raise SystemExit("mediapipe found no face in the astronaut photo")
    cam = mesh.astype(np.float64) * np.array([1.0, -1.0, -1.0])
    face = (cam - cam.mean(0)) @ rotation_from_mesh(mesh)
    frontal = np.stack([face[:, 0], -face[:, 1]], axis=1)
    points = from_mesh(frontal)
    affine = cv2.getAffineTransform(
        eye_and_mouth_centres(points).astype(np.float32), EAMM_CENTRES.astype(np.float32)
    )
    return (points @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else str(DEFAULT_TEMPLATE)
    template = build_template()
    np.save(out, template)
    print(
        f"wrote {out}: x {template[:, 0].min():.1f}..{template[:, 0].max():.1f}, "
        f"y {template[:, 1].min():.1f}..{template[:, 1].max():.1f}"
    )
