"""Face detection, face mesh and 68-point landmark backends.

Default: mediapipe 0.10.14 ``mp.solutions`` (detector and mesh ship in the wheel, run offline).
Optional: face-alignment (FAN) for the 68 points, for users who place its weights locally.
The mesh is always mediapipe's model: head pose comes from its 3-D vertices (eamm.face.pose).
It runs either inside mediapipe's FaceMesh graph (``mesh_engine="graph"``) or bare through
LiteRT on an ROI we compute (``"litert"``, eamm.face.mesh_litert): the short-range detector
(its own model through LiteRT too, eamm.face.detect_litert) finds the face in the first frame,
then each frame's ROI comes from the previous frame's vertices, as in the graph.
Models are built once per ``FaceModels`` object; reuse one per worker across clips.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from eamm.errors import EammError
from eamm.face.box import FaceBox
from eamm.face.detect_litert import FULL_RANGE, SHORT_RANGE, LiteRtFaceDetector
from eamm.face.ibug68 import from_mesh
from eamm.face.mesh_litert import LiteRtMesh, Roi

if TYPE_CHECKING:
    from eamm.config import LandmarkParams


MESH_ENGINES = ("graph", "litert")


class GraphFaceDetector:
    """Mediapipe's FaceDetection graph called like ``LiteRtFaceDetector``: faces as ``FaceBox``
    in pixels, in the graph's order (best score first)."""

    def __init__(self, model_selection: int, min_detection_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._graph = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_detection_confidence
        )

    def __call__(self, rgb: np.ndarray) -> list[FaceBox]:
        height, width = rgb.shape[:2]
        boxes = []
        for det in self._graph.process(rgb).detections or []:
            rel = det.location_data.relative_bounding_box
            keys = det.location_data.relative_keypoints  # 0: right eye, 1: left eye
            eyes = None
            if len(keys) >= 2:
                right, left = keys[0], keys[1]
                eyes = (right.x * width, right.y * height, left.x * width, left.y * height)
            boxes.append(
                FaceBox(
                    rel.xmin * width,
                    rel.ymin * height,
                    (rel.xmin + rel.width) * width,
                    (rel.ymin + rel.height) * height,
                    float(det.score[0]),
                    eyes,
                )
            )
        return boxes

    def close(self) -> None:
        self._graph.close()


class FaceModels:
    """Mediapipe face detector, a still-image mesh and a tracking mesh for consecutive crops.

    ``mesh_engine="graph"`` runs the mesh in mediapipe's FaceMesh graphs; ``"litert"`` runs the
    same model through LiteRT (eamm.face.mesh_litert) with the graphs' own steps done here, and
    the detectors' models through LiteRT as well (eamm.face.detect_litert): ``mesh`` finds the
    face with the short-range detector the graph uses (``detect`` the full-range one for whole
    frames) and runs the model on its ROI; ``track`` runs it on the
    ROI of the previous frame's points, and goes back to ``mesh`` on the first frame and when
    the face-presence score drops under 0.5 (the graph would give no face for that frame).
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        max_faces: int = 4,
        mesh_engine: str = "graph",
    ) -> None:
        import mediapipe as mp

        if mesh_engine not in MESH_ENGINES:
            raise EammError(f"unknown mesh engine '{mesh_engine}' (choose graph or litert)")
        # mediapipe 0.10.14 calls a protobuf API that warns on every result; harmless.
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", module="google")
        solutions = mp.solutions
        self.mesh_engine = mesh_engine
        self.max_faces = max_faces
        self._litert: LiteRtMesh | None = None
        self._previous: np.ndarray | None = None
        if mesh_engine == "litert":
            # The graphs' own models without the graphs (eamm.face.detect_litert): the whole
            # frame's full-range detector and FaceMesh's short-range one.
            self._detector = LiteRtFaceDetector(FULL_RANGE, min_detection_confidence)
            self._mesh_detector = LiteRtFaceDetector(SHORT_RANGE, 0.5)
            self._litert = LiteRtMesh()
            self._graphs = []
        else:
            self._detector = GraphFaceDetector(1, min_detection_confidence)
            self._still = solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False
            )
            self._tracker = solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=False
            )
            self._graphs = [self._detector, self._still, self._tracker]

    @classmethod
    def from_params(cls, landmarks: LandmarkParams) -> FaceModels:
        """The models ``preprocess.landmarks`` asks for."""
        return cls(landmarks.min_detection_confidence, mesh_engine=landmarks.mesh_engine)

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Faces in an RGB uint8 image, largest first."""
        boxes = self._detector(rgb)
        return sorted(boxes, key=lambda b: b.area, reverse=True)[: self.max_faces]

    @staticmethod
    def _vertices(result: object, width: int, height: int) -> np.ndarray | None:
        faces = getattr(result, "multi_face_landmarks", None)
        if not faces:
            return None
        lm = faces[0].landmark
        return np.array([[p.x * width, p.y * height, p.z * width] for p in lm], dtype=np.float32)

    def still_roi(self, rgb: np.ndarray) -> Roi | None:
        """Where the still mesh looks (LiteRT engine): the short-range detector's best face."""
        if self._litert is None:
            raise EammError("still_roi needs mesh_engine litert (the graph keeps its own)")
        boxes = self._mesh_detector(rgb)
        if not boxes:
            return None
        box = boxes[0]  # as the graph with max_num_faces=1: the best-scored face
        return Roi.from_box(box.x0, box.y0, box.x1, box.y1, box.eyes)

    def upside_down(self, rgb: np.ndarray, roi: Roi | None = None) -> bool:
        """Whether the face in ``rgb`` (at ``roi``, else where the detector finds it) is
        upside down: the mesh's face-presence logit is higher with its region turned by 180
        degrees (LiteRT engine; the graph exposes no score: False). Upright faces score 6.9
        to 30 higher upright than turned (223 clips: EAMM's, the sample's, blurred, dark,
        small); the LRW fixture turned or flipped scores 23-28 higher turned."""
        if self._litert is None:
            return False
        roi = roi or self.still_roi(rgb)
        if roi is None:
            return False
        turned = dataclasses.replace(roi, angle=roi.angle + math.pi)
        return self._litert.presence_logit(rgb, turned) > self._litert.presence_logit(rgb, roi)

    def mesh(self, rgb: np.ndarray, roi: Roi | None = None) -> np.ndarray | None:
        """(468, 3) vertices in pixels (z scaled like x) of the one face in a still image;
        ``roi`` (LiteRT engine) reuses a region found before instead of detecting the face."""
        if self._litert is None:
            return self._vertices(self._still.process(rgb), rgb.shape[1], rgb.shape[0])
        if roi is None:
            roi = self.still_roi(rgb)
        return None if roi is None else self._litert(rgb, roi)

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        """Like ``mesh`` but in video mode: cheaper on consecutive frames of one clip."""
        if self._litert is None:
            return self._vertices(self._tracker.process(rgb), rgb.shape[1], rgb.shape[0])
        mesh = None
        if self._previous is not None:
            mesh = self._litert(rgb, Roi.from_points(self._previous))
        if mesh is None:  # first frame, or the face was lost: detect again
            mesh = self.mesh(rgb)
        self._previous = mesh
        return mesh

    def reset_tracking(self) -> None:
        """Forget the previous clip's face before tracking a new one."""
        self._previous = None
        if self._litert is None:
            self._tracker.reset()

    def close(self) -> None:
        for graph in self._graphs:
            graph.close()


class LandmarkBackend(Protocol):
    """Gives the 68 iBUG points of the face whose mesh is known, in the image's pixels."""

    name: str

    def points68(self, rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray: ...


class MediapipeLandmarks:
    name = "mediapipe"

    def points68(self, rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        return from_mesh(mesh).astype(np.float32)


FAN_FILES = ("2DFAN4-cd938726ad.zip", "s3fd-619a316812.pth")


class FanLandmarks:
    """face-alignment's 2-D FAN, from weights the user placed in ``weights_dir``.

    face-alignment fetches weights into torch hub's ``checkpoints`` folder; we point torch hub
    at ``weights_dir`` and refuse to start when the files are not there, rather than let it
    try the network.
    """

    name = "fan"

    def __init__(self, weights_dir: str | Path, device: str = "cpu") -> None:
        weights = Path(weights_dir)
        missing = [f for f in FAN_FILES if not (weights / "checkpoints" / f).is_file()]
        if missing:
            raise EammError(
                f"{weights}/checkpoints: FAN weights missing ({', '.join(missing)}); "
                "place them there or set preprocess.landmarks.backend: mediapipe"
            )
        try:
            import face_alignment
            import torch
        except ImportError:
            raise EammError("face-alignment is not installed: run `make install-fan`") from None
        torch.hub.set_dir(str(weights))
        self._fa = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, face_detector="sfd"
        )

    def points68(self, rgb: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        x0, y0 = mesh[:, :2].min(0)
        x1, y1 = mesh[:, :2].max(0)
        found = self._fa.get_landmarks_from_image(rgb, detected_faces=[[x0, y0, x1, y1, 1.0]])
        if not found:
            return np.full((68, 2), np.nan, dtype=np.float32)
        return np.asarray(found[0], dtype=np.float32)[:, :2]


def make_backend(name: str, fan_weights_dir: str | None = None) -> LandmarkBackend:
    if name == "mediapipe":
        return MediapipeLandmarks()
    if name == "fan":
        if not fan_weights_dir:
            raise EammError("preprocess.landmarks.fan_weights_dir must be set for backend 'fan'")
        return FanLandmarks(fan_weights_dir)
    raise EammError(f"unknown landmark backend '{name}' (choose mediapipe or fan)")
