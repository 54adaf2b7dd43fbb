"""Mediapipe's BlazeFace detectors run bare through LiteRT (``mesh_engine: litert``).

The same ``face_detection_short_range.tflite`` / ``face_detection_full_range_sparse.tflite``
that mediapipe 0.10.14's FaceDetection graphs run (they ship in the wheel), with the graphs'
steps done here, so a call costs the model's invoke and not the graph's scheduling (on LRW's
eight still meshes per clip the graph's detector was the dearest step of alignment):
- ``ImageToTensorCalculator`` with ``keep_aspect_ratio``: the image centred in a square of its
  longer side (zero borders), warped corner to corner to the model's input, RGB floats in
  [-1, 1];
- ``SsdAnchorsCalculator`` (fixed anchor size, so only the centres matter) and
  ``TensorsToDetectionsCalculator`` (x, y, w, h order; scores clipped to +-100 and squashed by a
  sigmoid; kept from ``min_score``);
- ``NonMaxSuppressionCalculator`` (IoU over 0.3, WEIGHTED: each kept face is the
  score-weighted mean of the boxes and keypoints it suppresses, with its top score);
- ``DetectionProjectionCalculator``: tensor coordinates back to image pixels.
Options from mediapipe's ``face_detection_{short,full}_range.pbtxt`` and ``face_detection.pbtxt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from eamm.face.box import FaceBox
from eamm.face.mesh_litert import Roi, open_interpreter, wheel_model

NMS_IOU = 0.3
SCORE_CLIP = 100.0
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion


@dataclass(frozen=True)
class DetectorSpec:
    """One BlazeFace model and its graph's anchor options."""

    file: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float  # the graph's own threshold: 0.10.14's solutions do not pass theirs on


SHORT_RANGE = DetectorSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0, 0.5)
FULL_RANGE = DetectorSpec("face_detection_full_range_sparse.tflite", 192, (4,), 0.0, 0.6)


def anchor_centres(spec: DetectorSpec) -> np.ndarray:
    """(N, 2) float32 anchor centres (x, y) in [0, 1], in the model's output order.

    Consecutive layers with the same stride share one feature map; each layer adds one anchor
    per cell (aspect ratio 1) and one more where ``interpolated_scale_aspect_ratio`` > 0.
    """
    centres = []
    strides = spec.strides
    layer = 0
    while layer < len(strides):
        per_cell = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2 if spec.interpolated_scale_aspect_ratio > 0 else 1
            last += 1
        cells = math.ceil(spec.size / strides[layer])
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (xmin, ymin, xmax, ymax) box with each of ``boxes`` (0 without overlap)."""
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(scores: np.ndarray, values: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Mediapipe's WEIGHTED non-max suppression: [(score, values)], best score first.

    ``values`` (N, 4 + 2K) are the box (xmin, ymin, xmax, ymax) then the keypoints; a kept
    face's values are the score-weighted mean over every box with IoU above 0.3 to the best
    remaining one (itself included), its score that best one's.
    """
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        best = order[0]
        overlap = _iou(values[best, :4], values[order, :4]) > NMS_IOU
        group = order[overlap]
        weights = scores[group]
        mean = (weights[:, None] * values[group]).sum(0) / weights.sum()
        kept.append((float(scores[best]), mean.astype(np.float32)))
        order = order[~overlap]
    return kept


class LiteRtFaceDetector:
    """A BlazeFace model on whole RGB images: faces as ``FaceBox`` in pixels, best score first.

    Faces score at least the graph's own threshold (``spec.min_score``) and ``min_score``: with
    mediapipe 0.10.14 the FaceDetection solution's ``min_detection_confidence`` never reaches
    the graph (measured: 0.3 to 0.9 give the same faces), so the defaults reproduce the graph,
    and a higher ``min_score`` is applied here as its name promises. One interpreter per object
    (not thread-safe); ``num_threads=1`` as the workers run one clip per core.
    """

    def __init__(
        self,
        spec: DetectorSpec = SHORT_RANGE,
        min_score: float = 0.5,
        path: str | Path | None = None,
        num_threads: int = 1,
    ) -> None:
        self.spec = spec
        self.min_score = max(min_score, spec.min_score)
        model = path or wheel_model("face_detection", spec.file)
        self._interpreter = open_interpreter(model, num_threads, "preprocess.landmarks.mesh_engine")
        (inp,) = self._interpreter.get_input_details()
        if tuple(inp["shape"]) != (1, spec.size, spec.size, 3):
            raise ValueError(f"unexpected face detector input shape {inp['shape']}")
        self._input = inp["index"]
        outputs = {int(o["shape"][-1]): o["index"] for o in self._interpreter.get_output_details()}
        self._regressors, self._scores = outputs[4 + 2 * NUM_KEYPOINTS], outputs[1]
        self._anchors = anchor_centres(spec)

    def tensor(self, rgb: np.ndarray) -> tuple[np.ndarray, Roi]:
        """The model's input for ``rgb`` and the square it shows (the letterboxed image)."""
        height, width = rgb.shape[:2]
        roi = Roi(width / 2, height / 2, float(max(width, height)))
        tensor = roi.patch(rgb, self.spec.size, cv2.BORDER_CONSTANT).astype(np.float32)[None]
        tensor *= np.float32(2.0 / 255.0)
        tensor -= np.float32(1.0)
        return tensor, roi

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        tensor, roi = self.tensor(rgb)
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._scores).reshape(-1).astype(np.float64)
        logits = np.clip(logits, -SCORE_CLIP, SCORE_CLIP)  # float64: exp(100) overflows float32
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        raw = self._interpreter.get_tensor(self._regressors).reshape(len(logits), -1)[keep]
        size = np.float32(self.spec.size)
        anchors = self._anchors[keep]
        centre = raw[:, :2] / size + anchors
        half = raw[:, 2:4] / size / 2
        points = raw[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / size
        points = (points + anchors[:, None]).reshape(len(keep), -1)
        values = np.concatenate([centre - half, centre + half, points], axis=1)
        origin = np.array([roi.cx - roi.side / 2, roi.cy - roi.side / 2], np.float64)
        faces = []
        for score, v in weighted_nms(scores[keep], values):
            xy = v.astype(np.float64).reshape(-1, 2) * roi.side + origin  # tensor -> pixels
            (x0, y0), (x1, y1) = xy[0], xy[1]
            eyes = (xy[2, 0], xy[2, 1], xy[3, 0], xy[3, 1])
            faces.append(FaceBox(float(x0), float(y0), float(x1), float(y1), score, eyes))
        return faces
