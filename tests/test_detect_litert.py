"""Mediapipe's face detectors through LiteRT (mesh_engine: litert) against its graphs."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from eamm.face.detect_litert import (
    FULL_RANGE,
    SHORT_RANGE,
    LiteRtFaceDetector,
    anchor_centres,
    weighted_nms,
)
from eamm.face.landmarks import FaceModels, GraphFaceDetector
from eamm.sample.photos import photo


def project_images(clip) -> list[np.ndarray]:
    """The project's own faces: both sample photos (whole, and wide with borders) and frames
    of a sample LRW clip."""
    images = []
    for name in ("astronaut", "hopper"):
        img = photo(name)
        images += [img, cv2.copyMakeBorder(img, 0, 0, 300, 300, cv2.BORDER_REFLECT)]
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return images + frames[::7]


def as_array(box) -> np.ndarray:
    return np.array([box.x0, box.y0, box.x1, box.y1, *box.eyes])


def test_anchor_grids_match_the_models_outputs():
    short, full = anchor_centres(SHORT_RANGE), anchor_centres(FULL_RANGE)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # short range: 16x16 cells with 2 anchors each, then 8x8 cells with 6 (three stride-16 layers)
    assert short[0] == pytest.approx([0.5 / 16, 0.5 / 16]) and (short[0] == short[1]).all()
    assert short[512] == pytest.approx([0.5 / 8, 0.5 / 8]) and (short[512:518] == short[512]).all()
    assert full[1] == pytest.approx([1.5 / 48, 0.5 / 48])  # one anchor per cell, rows first


def test_weighted_nms_averages_what_it_suppresses_by_score():
    scores = np.array([0.6, 0.9, 0.8], np.float32)
    values = np.array(
        [
            [0.1, 0.1, 0.5, 0.5, 0.3, 0.3],
            [0.0, 0.0, 0.4, 0.4, 0.2, 0.2],
            [0.7, 0.7, 0.9, 0.9, 0.0, 0.0],
        ],
        np.float32,
    )
    kept = weighted_nms(scores, values)
    assert [s for s, _ in kept] == pytest.approx([0.9, 0.8])  # best first, each its top score
    # boxes 0 and 1 overlap (IoU 0.39 > 0.3): their score-weighted mean; box 2 on its own
    assert kept[0][1] == pytest.approx((0.9 * values[1] + 0.6 * values[0]) / 1.5)
    assert kept[1][1] == pytest.approx(values[2])


@pytest.mark.parametrize("selection, spec", [(0, SHORT_RANGE), (1, FULL_RANGE)])
def test_same_faces_as_the_graph(sample_lrw_clip, selection, spec):
    graph = GraphFaceDetector(selection)
    ours = LiteRtFaceDetector(spec)
    worst_px, worst_score, faces = 0.0, 0.0, 0
    try:
        for img in project_images(sample_lrw_clip):
            theirs, mine = graph(img), ours(img)
            assert len(mine) == len(theirs)
            for a, b in zip(theirs, mine, strict=True):
                worst_px = max(worst_px, float(np.abs(as_array(a) - as_array(b)).max()))
                worst_score = max(worst_score, abs(a.score - b.score))
                faces += 1
    finally:
        graph.close()
    print(f"{spec.file}: {faces} faces, within {worst_px:.3f} px, scores {worst_score:.1e}")
    assert faces >= 8
    assert worst_px < 0.2 and worst_score < 2e-3  # measured 0.05 px and 4e-4 on EAMM's media


def test_the_graphs_keep_their_own_thresholds_and_ours_applies_a_higher_one():
    img = photo("astronaut")
    counts = []
    for selection in (0, 1):
        for confidence in (0.3, 0.99):  # mediapipe 0.10.14 never passes this on to the graph
            graph = GraphFaceDetector(selection, min_detection_confidence=confidence)
            counts.append(len(graph(img)))
            graph.close()
    best = LiteRtFaceDetector(FULL_RANGE)(img)[0].score
    assert counts == [1, 1, 1, 1] and best < 0.99
    assert LiteRtFaceDetector(FULL_RANGE, min_score=0.99)(img) == []
    assert LiteRtFaceDetector(FULL_RANGE, min_score=0.1).min_score == FULL_RANGE.min_score == 0.6


def test_no_face_no_box():
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert LiteRtFaceDetector(SHORT_RANGE)(blank) == []
    assert LiteRtFaceDetector(FULL_RANGE)(blank) == []


def test_litert_face_models_run_no_mediapipe_graph():
    models = FaceModels(mesh_engine="litert")
    try:
        assert models._graphs == []
        assert isinstance(models._detector, LiteRtFaceDetector)
        assert len(models.detect(photo("hopper"))) == 1
    finally:
        models.close()
