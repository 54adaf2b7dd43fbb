"""Find a face too small for the detector in a photo seen whole.

The detector looks at the image shrunk to ``detect_width`` (640 px), where the face of a person
standing in a 12-megapixel photo is a few pixels: "no face in the image" for a 200-px face in a
4000x3000 photo. Searching overlapping tiles, each shrunk less, finds it; the photo is then cut
to a region around it in which the face is large, and aligned as any photo.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from eamm.face.box import FaceBox
from eamm.face.landmarks import FaceModels

ZOOMS = (2, 4, 8)  # tile side = the image's long side / zoom, tiles overlapping by half
MIN_TILE = 128  # px: no finer search than the detector's own input
REGION = 3.0  # the region cut around a found face: this many face sizes from its centre


def _tiles(height: int, width: int, side: int) -> Iterator[tuple[int, int]]:
    """Top-left corners of ``side`` squares covering the image, overlapping by half."""
    step = max(side // 2, 1)
    for y in sorted({*range(0, max(height - side, 0) + 1, step), max(height - side, 0)}):
        for x in sorted({*range(0, max(width - side, 0) + 1, step), max(width - side, 0)}):
            yield y, x


def find_small_face(image: np.ndarray, detect_width: int, models: FaceModels) -> FaceBox | None:
    """The largest face found in tiles of ``image`` (RGB), coarse tiles first, in image
    pixels; None where no tile shows one."""
    height, width = image.shape[:2]
    for zoom in ZOOMS:
        side = max(height, width) // zoom
        if side < MIN_TILE:
            break
        found: list[FaceBox] = []
        for y, x in _tiles(height, width, side):
            tile = image[y : y + side, x : x + side]
            factor = max(tile.shape[:2]) / detect_width
            if factor > 1:
                size = (round(tile.shape[1] / factor), round(tile.shape[0] / factor))
                tile = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
            for box in models.detect(np.ascontiguousarray(tile)):
                box = box.scaled(max(factor, 1.0))
                found.append(FaceBox(box.x0 + x, box.y0 + y, box.x1 + x, box.y1 + y, box.score))
        if found:
            return max(found, key=lambda b: b.area)
    return None


def face_region(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """The part of ``image`` around ``box``: ``REGION`` face sizes from its centre each way,
    cut at the image's edges (a view, not a copy)."""
    height, width = image.shape[:2]
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    half = REGION * max(box.x1 - box.x0, box.y1 - box.y0)
    x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
    x1, y1 = min(int(cx + half) + 1, width), min(int(cy + half) + 1, height)
    return image[y0:y1, x0:x1]
