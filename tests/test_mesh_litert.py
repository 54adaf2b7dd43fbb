"""The face mesh model through LiteRT (mesh_engine: litert) against mediapipe's FaceMesh graph."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from eamm.config import LandmarkParams, PreprocessParams, load_section
from eamm.errors import EammError
from eamm.face.ibug68 import from_mesh
from eamm.face.landmarks import FaceModels
from eamm.face.mesh_litert import INPUT_SIZE, ROTATION_FROM, ROTATION_TO, LiteRtMesh, Roi
from tests.conftest import VENV_BIN

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engines():
    graph, litert = FaceModels(mesh_engine="graph"), FaceModels(mesh_engine="litert")
    yield graph, litert
    graph.close()
    litert.close()


def video_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --- the setting -------------------------------------------------------------------------------


def test_mesh_engine_setting_validates():
    assert LandmarkParams().mesh_engine == "litert"
    assert LandmarkParams(mesh_engine="graph").mesh_engine == "graph"
    assert LandmarkParams(mesh_engine="litert").mesh_engine == "litert"
    with pytest.raises(ValueError, match="mesh_engine"):
        LandmarkParams(mesh_engine="tflite")
    project = load_section(ROOT / "params.yaml", "preprocess", PreprocessParams)
    assert project.landmarks.mesh_engine in ("graph", "litert")
    with pytest.raises(EammError, match="unknown mesh engine"):
        FaceModels(mesh_engine="tflite")


def test_face_models_follow_the_setting():
    models = FaceModels.from_params(LandmarkParams(mesh_engine="litert"))
    try:
        assert models.mesh_engine == "litert"
    finally:
        models.close()


# --- ROI geometry (no model) -------------------------------------------------------------------


def test_roi_from_points_is_the_graphs_rotated_enlarged_square():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, (468, 2)) * [60, 100] + [40, 20]  # 60 wide, 100 tall
    points[ROTATION_FROM], points[ROTATION_TO] = (50, 60), (90, 70)
    roi = Roi.from_points(points)
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    assert (roi.cx, roi.cy) == pytest.approx(((x0 + x1) / 2, (y0 + y1) / 2))
    assert roi.side == pytest.approx(1.5 * (y1 - y0))
    assert roi.angle == pytest.approx(math.atan2(10, 40))


def test_roi_maps_the_model_input_corner_to_corner():
    roi = Roi(100.0, 80.0, 90.0, math.radians(30))
    m = roi.to_frame()
    corners = np.array([[0, 0], [INPUT_SIZE, 0], [0, INPUT_SIZE], [INPUT_SIZE, INPUT_SIZE]])
    mapped = corners @ m[:, :2].T + m[:, 2]
    assert mapped.mean(0) == pytest.approx([100.0, 80.0])
    assert np.linalg.norm(mapped[1] - mapped[0]) == pytest.approx(90.0)
    dx, dy = mapped[1] - mapped[0]  # the input's x axis runs along the rotated top edge
    assert math.atan2(dy, dx) == pytest.approx(math.radians(30))


# --- no face -----------------------------------------------------------------------------------


def test_a_frame_without_a_face_gives_none(engines):
    _, litert = engines
    blank = np.full((256, 256, 3), 128, np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert litert.mesh(blank) is None
    litert.reset_tracking()
    assert litert.track(noise) is None
    assert litert.track(blank) is None
    # the model alone, on an ROI with no face in it: presence under the threshold
    mesh = LiteRtMesh()
    vertices, presence = mesh.run(noise, Roi(128.0, 128.0, 200.0))
    assert vertices.shape == (468, 3) and presence < 0.1
    assert mesh(noise, Roi(128.0, 128.0, 200.0)) is None


@pytest.mark.fixtures
def test_tracking_detects_again_after_losing_the_face(fixtures_dir, engines):
    _, litert = engines
    frames = video_frames(fixtures_dir / "aligned_videos" / "happy.mp4")[:3]
    blank = np.full_like(frames[0], 128)
    litert.reset_tracking()
    results = [litert.track(f) for f in (frames[0], frames[1], blank, frames[2])]
    assert [r is None for r in results] == [False, False, True, False]


# --- agreement with the graph on real frames (measured: 0.02-0.06 px mean, 0.31 px max) --------


@pytest.mark.fixtures
@pytest.mark.parametrize(
    "clip", ["aligned_videos/happy.mp4", "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"]
)
def test_litert_tracking_agrees_with_the_graph(fixtures_dir, engines, clip):
    graph, litert = engines
    frames = video_frames(fixtures_dir / clip)
    graph.reset_tracking()
    litert.reset_tracking()
    dist = []
    for frame in frames:
        a, b = graph.track(frame), litert.track(frame)
        assert a is not None and b is not None
        dist.append(np.linalg.norm(from_mesh(a) - from_mesh(b), axis=1))
    dist = np.array(dist)
    print(f"{clip}: 68 points litert vs graph {dist.mean():.3f} px mean, {dist.max():.3f} max")
    assert dist.mean() < 0.15 and dist.max() < 1.0


@pytest.mark.fixtures
def test_litert_still_mesh_matches_the_graph_with_depth(fixtures_dir, engines):
    """Same detector, same ROI: all 468 vertices agree, z included (pose reads z)."""
    graph, litert = engines
    for image in sorted((fixtures_dir / "portraits").iterdir()):
        frame = rgb(image)
        a, b = graph.mesh(frame), litert.mesh(frame)
        assert a is not None and b is not None, image
        assert np.abs(a - b).max() < 0.05, image  # measured: 0.012 px


def test_litert_notice_is_kept_off_stderr_and_other_output_is_not():
    """Every command printed 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' ahead
    of its one-line summary or error."""
    code = (
        "import os\n"
        "from eamm.face.mesh_litert import LiteRtMesh, _without_delegate_notice\n"
        "LiteRtMesh()\n"
        "with _without_delegate_notice():\n"
        "    os.write(2, b'kept\\n')\n"
    )
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stderr == "kept\n", proc.stderr
