"""Animate a face photo: expression and mouth by a landmark-driven warp, head motion by a
similarity, composed into one remap per frame.

Coordinates: ``q`` is the photo's face frame, in photo pixels, origin at the inner-lip centre,
x along the eye line (towards the subject's left eye), y down the face. ``u`` is the distance
between the eye centres; every warp amount is in units of ``u``.

Per frame the warp is built on a coarse grid over the face in ``q``:
1. the expression field: Gaussian displacements of control points (brows, eyelids, cheeks,
   nose wings, mouth corners, lips, chin), blended with weights normalised where they overlap,
   inverted by fixed-point iteration;
2. the jaw: below the lip line the face moves down by the opening (most at the lower lip,
   fading out below the chin); the gap left between the lips is the mouth cavity, painted dark.
The grid's displacements are sampled once per output pixel together with the head-motion
similarity, and the photo is resampled once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from eamm.sample.photos import LANDMARKS, photo

# name: (subject-right vertex, subject-left vertex or None on the midline, sigma_x, sigma_y in u)
CONTROLS: dict[str, tuple[int, int | None, float, float]] = {
    "brow_inner": (107, 336, 0.16, 0.24),
    "brow_mid": (105, 334, 0.16, 0.24),
    "brow_outer": (70, 300, 0.16, 0.24),
    "upper_lid": (159, 386, 0.2, 0.1),
    "lower_lid": (145, 374, 0.2, 0.1),
    "cheek": (50, 280, 0.24, 0.24),
    "nose_wing": (48, 278, 0.15, 0.15),
    "corner": (61, 291, 0.17, 0.2),
    "upper_lip": (0, None, 0.3, 0.12),
    "lower_lip": (17, None, 0.3, 0.14),
    "chin": (152, None, 0.45, 0.3),
}
# The lip line runs between the inner lips: corners, then (upper, lower) inner-lip vertex pairs.
LIP_CORNERS = (78, 308)
LIP_PAIRS = ((191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402))
LIP_PAIRS += ((310, 318), (415, 324))
EYES = ((33, 133), (263, 362))  # (outer, inner) corners of the subject's right, then left eye

MAX_OPENING_U = 0.5  # lower lip drop at opening 1
CORNER_SPREAD_U = 0.15  # mouth-corner shift, outwards, at lip width 1 (inwards at -1)
CAVITY = np.array([48.0, 14.0, 18.0], dtype=np.float32)
GRID_STEP_U = 1 / 16
FIXED_POINT_STEPS = 3


@dataclass(frozen=True)
class Identity:
    """A 'speaker': one photo, mirrored or not, stretched, tinted, on its own background."""

    name: str
    photo: str
    flip: bool = False
    stretch: tuple[float, float] = (1.0, 1.0)  # face width, height factors
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    background: tuple[int, int, int] = (128, 128, 128)


IDENTITIES: dict[str, Identity] = {
    i.name: i
    for i in (
        Identity("astronaut", "astronaut"),
        Identity(
            "astronaut_mirror",
            "astronaut",
            flip=True,
            stretch=(0.94, 1.0),
            tint=(1.05, 0.97, 0.9),
            background=(150, 140, 120),
        ),
        Identity("hopper", "hopper", background=(110, 120, 135)),
        Identity(
            "hopper_mirror",
            "hopper",
            flip=True,
            stretch=(1.06, 0.97),
            tint=(0.92, 1.0, 1.08),
            background=(160, 160, 150),
        ),
        # Held out: only test speakers and LRW val/test clips use these two.
        Identity(
            "astronaut_wide",
            "astronaut",
            stretch=(1.12, 0.94),
            tint=(0.9, 0.97, 1.12),
            background=(95, 110, 125),
        ),
        Identity(
            "hopper_narrow",
            "hopper",
            flip=True,
            stretch=(0.9, 1.06),
            tint=(1.1, 1.0, 0.88),
            background=(175, 160, 140),
        ),
    )
}


@dataclass(frozen=True)
class Framing:
    """Where the face centre lands in the output frame and its eye distance there (px)."""

    width: int
    height: int
    center: tuple[float, float]
    eye_distance: float


@dataclass(frozen=True)
class HeadPose:
    """In-plane head motion: roll (degrees, counter-clockwise on screen), shift (px), scale."""

    roll_deg: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class FaceRig:
    """One photo's face frame, control points and warp grid (built once per photo)."""

    def __init__(self, photo_name: str) -> None:
        marks = {k: np.asarray(v, dtype=np.float64) for k, v in LANDMARKS[photo_name].items()}
        right = (marks[EYES[0][0]] + marks[EYES[0][1]]) / 2
        left = (marks[EYES[1][0]] + marks[EYES[1][1]]) / 2
        self.u = float(np.linalg.norm(left - right))
        self.angle = float(np.arctan2(left[1] - right[1], left[0] - right[0]))
        self.origin = (marks[13] + marks[14]) / 2
        self.to_photo = _rotation(self.angle)  # q -> photo offsets from origin
        self.image = photo(photo_name)
        self.q = {k: self.to_photo.T @ (v - self.origin) for k, v in marks.items()}
        u, q = self.u, self.q
        self.eye_centre_y = float((q[EYES[0][0]][1] + q[EYES[1][0]][1]) / 2)
        self.center = np.array([0.0, self.eye_centre_y / 2])  # between the eyes and the mouth

        line = [q[LIP_CORNERS[0]], *[(q[a] + q[b]) / 2 for a, b in LIP_PAIRS], q[LIP_CORNERS[1]]]
        line = np.array(sorted(line, key=lambda p: p[0]))
        self.lip_x, self.lip_y = line[:, 0], line[:, 1]
        self.lip_half_width = float((q[LIP_CORNERS[1]][0] - q[LIP_CORNERS[0]][0]) / 2)
        self.chin_depth = float(q[152][1] - np.interp(q[152][0], self.lip_x, self.lip_y))

        # The grid (q coordinates) and the normalised Gaussian weights of every control point.
        brows = min(q[CONTROLS[n][0]][1] for n in ("brow_inner", "brow_mid", "brow_outer"))
        self.x0, self.y0 = -1.75 * u, brows - 0.75 * u
        x1, y1 = 1.75 * u, q[152][1] + 0.7 * u
        self.step = GRID_STEP_U * u
        xs = np.arange(self.x0, x1 + self.step, self.step)
        ys = np.arange(self.y0, y1 + self.step, self.step)
        self.grid_x, self.grid_y = np.meshgrid(xs, ys)
        self.points, self.sides = [], []
        sigmas = []
        for name, (r, left_vertex, sx, sy) in CONTROLS.items():
            for vertex, side in ((r, -1.0), (left_vertex, 1.0)):
                if vertex is None:
                    continue
                self.points.append(q[vertex])
                self.sides.append((name, side if left_vertex is not None else 0.0))
                sigmas.append((sx * u, sy * u))
        pts, sig = np.array(self.points), np.array(sigmas)
        gx = (self.grid_x[..., None] - pts[:, 0]) / sig[:, 0]
        gy = (self.grid_y[..., None] - pts[:, 1]) / sig[:, 1]
        weights = np.exp(-0.5 * (gx * gx + gy * gy))
        self.weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1.0)

    def controls(self, expression: dict[str, tuple[float, float]], width: float) -> np.ndarray:
        """(K, 2) control displacements in q pixels: the expression plus the lip width.

        Keys are control names (both sides, ``out`` mirrored) or ``name.r`` / ``name.l`` for
        one side; values are (outwards, downwards) in ``u``.
        """
        moves = np.zeros((len(self.points), 2))
        for k, (name, side) in enumerate(self.sides):
            total = np.zeros(2)
            for key in (name, f"{name}.{'r' if side < 0 else 'l'}"):
                if key in expression and (side != 0 or key == name):
                    out, down = expression[key]
                    total += (out * (side or 1.0), down)
            if name == "corner":
                total[0] += side * CORNER_SPREAD_U * width
            moves[k] = total * self.u
        return moves

    def _sample(self, field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gx = ((x - self.x0) / self.step).astype(np.float32)
        gy = ((y - self.y0) / self.step).astype(np.float32)
        return cv2.remap(field, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def field(
        self, expression: dict[str, tuple[float, float]], opening: float, width: float
    ) -> np.ndarray:
        """(gh, gw, 3) float32 grid: photo-pixel displacement (x, y) and cavity opacity."""
        u = self.u
        forward = (self.weights @ self.controls(expression, width)).astype(np.float32)
        qx, qy = self.grid_x, self.grid_y
        wx, wy = qx, qy
        for _ in range(FIXED_POINT_STEPS):
            shift = self._sample(forward, wx, wy)
            wx, wy = qx - shift[..., 0], qy - shift[..., 1]

        # Jaw drop below the lip line; the gap it leaves is the cavity.
        gap = MAX_OPENING_U * u * float(np.clip(opening, 0.0, 1.2))
        rounding = max(-width, 0.0)
        half = self.lip_half_width * (1.0 - 0.35 * rounding)
        lip = np.interp(wx, self.lip_x, self.lip_y)
        depth = wy - lip
        below = np.maximum(depth, 0.0)
        across = np.clip(1.0 - (wx / (half + 0.9 * below)) ** 2, 0.0, 1.0) ** 0.6
        fade_start = 0.2 * u
        fade_end = self.chin_depth + 0.45 * u
        fade = 1.0 - _smoothstep((below - fade_start) / (fade_end - fade_start))
        drop = gap * across * fade
        src_y = np.where(depth < 0, wy, np.maximum(wy - drop, lip))
        edge = 0.03 * u
        cavity = (
            np.clip(depth / edge + 0.5, 0, 1)
            * np.clip((drop - depth) / edge + 0.5, 0, 1)
            * np.clip(drop / edge, 0, 1)
        )
        dq = np.stack([wx - qx, src_y - qy], axis=-1) @ self.to_photo.T
        return np.dstack([dq, cavity]).astype(np.float32)

    def neutral_field(self) -> np.ndarray:
        return self.field({}, 0.0, 0.0)

    def face_to_frame(self, identity: Identity, framing: Framing, pose: HeadPose) -> np.ndarray:
        """2x3 affine from q to output pixels."""
        flip = -1.0 if identity.flip else 1.0
        zoom = framing.eye_distance / self.u
        linear = (
            zoom
            * pose.scale
            * _rotation(np.radians(-pose.roll_deg))
            @ np.diag([flip * identity.stretch[0], identity.stretch[1]])
        )
        shift = np.asarray(framing.center) + np.asarray(pose.shift) - linear @ self.center
        return np.hstack([linear, shift[:, None]])

    def render(
        self, identity: Identity, framing: Framing, pose: HeadPose, field: np.ndarray
    ) -> np.ndarray:
        """One RGB uint8 frame: the tinted photo under the head pose, warped by ``field``."""
        source = _tinted(identity)
        to_frame = self.face_to_frame(identity, framing, pose)
        inv_lin = np.linalg.inv(to_frame[:, :2])
        to_face = np.hstack([inv_lin, -inv_lin @ to_frame[:, 2:]])  # frame -> q
        to_photo = np.hstack(
            [self.to_photo @ to_face[:, :2], (self.to_photo @ to_face[:, 2] + self.origin)[:, None]]
        )
        size = (framing.width, framing.height)
        frame = cv2.warpAffine(
            source,
            to_photo,
            size,
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=identity.background,
        )
        # The face region: only there does the warp differ from the similarity.
        gh, gw = field.shape[:2]
        grid_to_frame = np.hstack(
            [
                to_frame[:, :2] * self.step,
                (to_frame[:, :2] @ [self.x0, self.y0] + to_frame[:, 2])[:, None],
            ]
        )
        corners = np.array([[0, 0], [gw - 1, 0], [0, gh - 1], [gw - 1, gh - 1]], dtype=np.float64)
        xy = corners @ grid_to_frame[:, :2].T + grid_to_frame[:, 2]
        x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + 1, size)
        if x1 <= x0 or y1 <= y0:
            return frame
        grid_to_region = grid_to_frame - [[0, 0, x0], [0, 0, y0]]
        warp = cv2.warpAffine(
            field,
            grid_to_region,
            (int(x1 - x0), int(y1 - y0)),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        a = [float(v) for v in to_photo.ravel()]
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        px = (a[0] * xs + a[2]) + a[1] * ys + warp[..., 0]
        py = (a[3] * xs + a[5]) + a[4] * ys + warp[..., 1]
        region = cv2.remap(
            source,
            px,
            py,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=identity.background,
        )
        alpha = warp[..., 2]
        rows = np.flatnonzero(alpha.max(1) > 0)
        if len(rows):
            cols = np.flatnonzero(alpha.max(0) > 0)
            box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            colour = CAVITY * np.asarray(identity.tint, dtype=np.float32)
            weight = alpha[box][..., None]
            region[box] = (region[box] * (1 - weight) + colour * weight + 0.5).astype(np.uint8)
        frame[y0:y1, x0:x1] = region
        return frame


@cache
def rig(photo_name: str) -> FaceRig:
    return FaceRig(photo_name)


@cache
def _tinted(identity: Identity) -> np.ndarray:
    img = photo(identity.photo).astype(np.float32) * np.asarray(identity.tint, dtype=np.float32)
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def render_face(
    identity: Identity,
    framing: Framing,
    pose: HeadPose = HeadPose(),
    expression: dict[str, tuple[float, float]] | None = None,
    opening: float = 0.0,
    width: float = 0.0,
) -> np.ndarray:
    """One frame of ``identity`` with the given expression, mouth shape and head pose."""
    face = rig(identity.photo)
    field = face.field(expression or {}, opening, width)
    return face.render(identity, framing, pose, field)


def astronaut() -> np.ndarray:
    """The unedited astronaut photo (a writable copy), as the alignment template was built from."""
    return np.array(photo("astronaut"))
