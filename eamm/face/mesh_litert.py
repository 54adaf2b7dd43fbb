"""Mediapipe's face mesh model run bare through LiteRT on a region of interest (ROI).

The same ``face_landmark.tflite`` that mediapipe 0.10.14's FaceMesh graph runs (it ships in the
wheel), without the graph: the caller gives the ROI, from the previous frame's vertices when
tracking or from a detected face box, so no detection/tracking machinery runs per frame.

The ROI, the warp and the projection back follow the graph's subgraphs:
- from vertices (``face_landmark_landmarks_to_roi``): the bounding box of all 468 points,
  rotated so that the line from vertex 33 to vertex 263 (the outer eye corners) is horizontal,
  made square on its longer side and enlarged 1.5x. (Older mediapipe sources name 33 -> 133;
  on real frames only 33 -> 263 reproduces 0.10.14's tracking, within 0.02 px at 256);
- from a detection (``face_detection_front_detection_to_roi``): the detector's box, rotated by
  its two eye keypoints, square on its longer side, enlarged 1.5x;
- ``ImageToTensorCalculator``: the rotated square warped to 192x192 RGB floats in [0, 1] with
  replicated borders; ``TensorsToFloatsCalculator`` (sigmoid) and ``ThresholdingCalculator``
  (the solution's ``min_tracking_confidence``, 0.5) gate the face-presence score;
- ``LandmarkProjectionCalculator``: points rotated and scaled back into the frame; z is
  scaled like x (``z * roi width``), so after ``FaceModels._vertices`` it is in frame pixels.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

INPUT_SIZE = 192
NUM_VERTICES = 468
ROI_SCALE = 1.5
ROTATION_FROM, ROTATION_TO = 33, 263  # outer eye corners, subject's right then left
MIN_PRESENCE = 0.5  # FaceMesh's min_tracking_confidence default


def wheel_model(module: str, file: str) -> Path:
    """A model file that ships inside the installed mediapipe wheel (``modules/<module>/``)."""
    import mediapipe

    path = Path(mediapipe.__file__).parent / "modules" / module / file
    if not path.is_file():
        from eamm.errors import EammError

        raise EammError(f"{path}: model missing from the mediapipe wheel")
    return path


def model_path() -> Path:
    """``face_landmark.tflite`` inside the installed mediapipe wheel."""
    return wheel_model("face_landmark", "face_landmark.tflite")


def open_interpreter(path: str | Path, num_threads: int, setting: str) -> object:
    """A LiteRT interpreter with its tensors allocated; one line naming ``setting`` when
    ai-edge-litert is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from eamm.errors import EammError

        raise EammError(
            f"ai-edge-litert is not installed (needed by {setting}: litert): "
            "pip install ai-edge-litert==2.3.0"
        ) from None
    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    with _without_delegate_notice():
        interpreter.allocate_tensors()
    return interpreter


# LiteRT's native code prints this once per process as an interpreter allocates, to the
# process's stderr, ahead of a command's own one-line summary or error; no setting turns it off.
_DELEGATE_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
_STDERR = threading.Lock()


@contextmanager
def _without_delegate_notice() -> Iterator[None]:
    """File descriptor 2 captured for the block; all of it but LiteRT's notice is written back,
    so another thread's output in those milliseconds comes late, never lost."""
    with _STDERR, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = capture.read().replace(_DELEGATE_NOTICE, b"")
            if rest:
                os.write(2, rest)


@dataclass(frozen=True)
class Roi:
    """A square region of a frame in pixels: centre, side and rotation (radians, y down)."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    @classmethod
    def from_points(cls, points: np.ndarray) -> Roi:
        """The graph's ROI for the next frame from (468, >=2) vertices in frame pixels."""
        xy = np.asarray(points, dtype=np.float64)[:, :2]
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        dx, dy = xy[ROTATION_TO] - xy[ROTATION_FROM]
        side = ROI_SCALE * max(x1 - x0, y1 - y0)
        return cls((x0 + x1) / 2, (y0 + y1) / 2, side, math.atan2(dy, dx))

    @classmethod
    def from_box(
        cls,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        eyes: tuple[float, float, float, float] | None = None,
    ) -> Roi:
        """The graph's ROI from a detected face box (pixels) and its (right, left) eye
        keypoints ``(xr, yr, xl, yl)``; without them the box is taken as upright."""
        angle = math.atan2(eyes[3] - eyes[1], eyes[2] - eyes[0]) if eyes else 0.0
        side = ROI_SCALE * max(x1 - x0, y1 - y0)
        return cls((x0 + x1) / 2, (y0 + y1) / 2, side, angle)

    def patch(self, rgb: np.ndarray, size: int, border: int) -> np.ndarray:
        """The region warped to a (size, size) model input, bilinear, outside pixels by
        ``border`` (cv2.BORDER_REPLICATE for the mesh, BORDER_CONSTANT black for a detector)."""
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        shape = (size, size)
        return cv2.warpAffine(rgb, self.to_frame(size), shape, flags=flags, borderMode=border)

    def to_frame(self, size: int = INPUT_SIZE) -> np.ndarray:
        """2x3 affine: model-input pixels -> frame pixels (corner to corner, as the graph)."""
        k = self.side / size
        c, s = k * math.cos(self.angle), k * math.sin(self.angle)
        half = size / 2
        return np.array(
            [
                [c, -s, self.cx - c * half + s * half],
                [s, c, self.cy - s * half - c * half],
            ]
        )


class LiteRtMesh:
    """``face_landmark.tflite`` on one ROI per call: (468, 3) vertices in frame pixels or None.

    One interpreter per object (not thread-safe); ``num_threads=1`` as the workers run one clip
    per core.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        num_threads: int = 1,
        min_presence: float = MIN_PRESENCE,
    ) -> None:
        self._interpreter = open_interpreter(
            path or model_path(), num_threads, "preprocess.landmarks.mesh_engine"
        )
        (inp,) = self._interpreter.get_input_details()
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(f"unexpected face mesh input shape {inp['shape']}")
        self._input = inp["index"]
        details = self._interpreter.get_output_details()
        outputs = {int(np.prod(o["shape"])): o["index"] for o in details}
        self._vertices_out, self._presence_out = outputs[NUM_VERTICES * 3], outputs[1]
        self.min_presence = min_presence

    def presence_logit(self, rgb: np.ndarray, roi: Roi) -> float:
        """The face-presence logit on ``roi`` (unsaturated where the probability reads 1.0)."""
        self._invoke(rgb, roi)
        return float(self._interpreter.get_tensor(self._presence_out).ravel()[0])

    def _invoke(self, rgb: np.ndarray, roi: Roi) -> None:
        tensor = roi.patch(rgb, INPUT_SIZE, cv2.BORDER_REPLICATE).astype(np.float32)[None]
        tensor *= 1.0 / 255.0
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()

    def run(self, rgb: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(vertices (468, 3) float32 in frame pixels, face-presence probability) on ``roi``."""
        to_frame = roi.to_frame()
        self._invoke(rgb, roi)
        raw = self._interpreter.get_tensor(self._vertices_out).reshape(NUM_VERTICES, 3)
        logit = float(self._interpreter.get_tensor(self._presence_out).ravel()[0])
        presence = 1.0 / (1.0 + math.exp(-logit))
        out = np.empty((NUM_VERTICES, 3), dtype=np.float32)
        out[:, :2] = raw[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        out[:, 2] = raw[:, 2] * (roi.side / INPUT_SIZE)
        return out, presence

    def __call__(self, rgb: np.ndarray, roi: Roi) -> np.ndarray | None:
        """Vertices on ``roi``, or None when the face-presence score is under the threshold."""
        vertices, presence = self.run(rgb, roi)
        return vertices if presence >= self.min_presence else None
