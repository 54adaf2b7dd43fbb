"""A detected face box, shared by the detectors (mediapipe graph, LiteRT)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaceBox:
    """A detected face in pixel coordinates of the image it was found in."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    # the detector's right- and left-eye keypoints (xr, yr, xl, yl), where it gave them
    eyes: tuple[float, float, float, float] | None = None

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)

    def scaled(self, factor: float) -> FaceBox:
        eyes = tuple(v * factor for v in self.eyes) if self.eyes else None
        return FaceBox(
            self.x0 * factor,
            self.y0 * factor,
            self.x1 * factor,
            self.y1 * factor,
            self.score,
            eyes,  # type: ignore[arg-type]
        )
