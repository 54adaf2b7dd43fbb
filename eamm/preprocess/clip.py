"""Process one raw clip into the data contract read by every later stage.

Outputs (one folder per clip, written to a temporary folder and renamed on success):
``frames.mp4`` aligned RGB crops at 25 fps; ``audio.wav`` 16 kHz mono s16; ``mfcc.npy``
float32 (T, 28, 13); ``landmarks.npy`` float32 (T, 68, 2) in crop pixels, NaN where no face;
``pose.npy`` float32 (T, 7) in EAMM's 3DDFA row format, NaN where no face.

One similarity per clip (as EAMM: head motion stays in the crop, the pose stream describes it),
estimated from iBUG points 0..46 against the template on each of the first frames with a face
and combined by an element-wise median (EAMM used the first frame alone). The face detector runs
only until it finds a face (``detect_boxes``); the crops are encoded in-process (``encoder``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import av
import cv2
import numpy as np

from eamm.atomic import check_replaceable, folder_mode, real_folder, replace_folder
from eamm.audio import (
    NoAudioError,
    end_pad_for_frames,
    fit_length,
    load_audio_16k_mono,
    mfcc_windows,
    write_wav_s16,
)
from eamm.config import AUDIO_RATE, PreprocessParams
from eamm.errors import EammError, MediaError, MissingFileError
from eamm.face.box import FaceBox
from eamm.face.ibug68 import ALIGN_POINTS
from eamm.face.landmarks import FaceModels, LandmarkBackend, make_backend
from eamm.face.pose import pose_row
from eamm.face.similarity import Similarity, estimate_similarity, median_similarity
from eamm.face.template import TEMPLATE_SIZE, load_template
from eamm.manifest import OUTPUT_FILES
from eamm.media.encode import PyAVVideoWriter, VideoWriter
from eamm.preprocess.errors import (
    AVMismatchError,
    FewFacesError,
    MultipleFacesError,
    NoFaceError,
    SceneCutError,
    TooShortError,
    UpsideDownError,
)
from eamm.video.decode import decode_frames, open_video, resample_fps, stream_info
from eamm.video.warp import resize_rgb, warp_to_crop


@dataclass(frozen=True)
class ClipResult:
    """What one processed clip produced (a manifest row's clip-level facts)."""

    video: str
    audio: str | None
    out_dir: str
    num_frames: int
    num_windows: int
    input_frames: int
    input_fps: float
    width: int
    height: int
    faces_detected: int
    frames_with_face: int
    audio_source: str
    audio_diff_samples: int
    mfcc_end_pad: int
    transform: tuple[float, ...]
    landmark_backend: str
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.video}: {self.num_frames} frames, {self.num_windows} MFCC windows, "
            f"face in {self.frames_with_face}/{self.num_frames} frames "
            f"({self.faces_detected} detected), {self.seconds:.2f} s"
        )


class _Counter:
    """Counts frames flowing through a generator (input frames before fps normalisation)."""

    def __init__(self, frames: Iterator[av.VideoFrame]) -> None:
        self._frames = frames
        self.count = 0

    def __iter__(self) -> Iterator[av.VideoFrame]:
        for frame in self._frames:
            self.count += 1
            yield frame


def _box_to_crop(box: FaceBox, size: int, margin: float = 1.8) -> Similarity:
    """Crop -> frame similarity showing a square of ``margin`` x the box around its centre."""
    side = margin * max(box.x1 - box.x0, box.y1 - box.y0)
    scale = side / size
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    return Similarity(scale, 0.0, cx - scale * size / 2, cy - scale * size / 2)


def detect_faces(frame: av.VideoFrame, detect_width: int, models: FaceModels) -> list[FaceBox]:
    """Faces in frame pixels, largest first, detected on an RGB copy ``detect_width`` wide.

    Narrower frames are scaled up too: detecting at their own size saves ~2 ms per frame but
    moves the box, and with it the mesh crop and the estimate, by about a pixel.
    """
    small = resize_rgb(frame, detect_width)
    factor = frame.width / small.shape[1]
    return [box.scaled(factor) for box in models.detect(small)]


def _face_crop(frame: av.VideoFrame, box: FaceBox) -> tuple[Similarity, np.ndarray]:
    """(crop -> frame similarity, RGB crop) of a square around the face in ``box``."""
    to_frame = _box_to_crop(box, TEMPLATE_SIZE)
    return to_frame, warp_to_crop(frame, to_frame.matrix, TEMPLATE_SIZE)


def crop_writer(path: Path, params: PreprocessParams) -> PyAVVideoWriter | VideoWriter:
    """The H.264 encoder of a clip's aligned crops (``frames.mp4``) with the params' settings."""
    writer = PyAVVideoWriter if params.encoder == "pyav" else VideoWriter
    return writer(
        path,
        params.crop_size,
        params.crop_size,
        params.fps,
        crf=params.crf,
        preset=params.preset,
        pix_fmt=params.pix_fmt,
    )


def clip_transform(
    head: list[av.VideoFrame],
    video: Path,
    template: np.ndarray,
    params: PreprocessParams,
    models: FaceModels,
    backend: LandmarkBackend,
) -> tuple[Similarity, int]:
    """(crop -> frame similarity, faces detected): the median of the per-frame estimates from
    iBUG points 0..46 on the given first frames; typed errors for no face / several faces.

    The detector runs on each frame until it finds a face, then (``detect_boxes="first"``) the
    later frames reuse the largest face's box: the mesh finds the points in each frame anyway,
    and the detector is the dearest model per frame. Faces are counted where it ran. While the
    box (so the crop's framing) stays, the still mesh can reuse the region its detector found
    on the first crop (``head_rois="first"``, LiteRT mesh) instead of detecting it in each.
    """
    faces_detected, estimates, box, roi = 0, [], None, None
    share_roi = params.head_rois == "first" and models.mesh_engine == "litert"
    for frame in head:
        if box is None or params.detect_boxes == "every":
            boxes = detect_faces(frame, params.detect_width, models)
            faces_detected = max(faces_detected, len(boxes))
            if not boxes:
                continue
            box, roi = boxes[0], None
        to_frame, crop = _face_crop(frame, box)
        if share_roi and roi is None:
            roi = models.still_roi(crop)
            if roi is None:
                continue
        mesh = models.mesh(crop, roi)
        if mesh is not None:
            if not estimates and models.upside_down(crop, roi):
                raise UpsideDownError(
                    video, f"the face is upside down in {_where(head)} (stored turned, with no "
                    "rotation metadata): rotate the video, or set its rotation"
                )  # fmt: skip
            points = to_frame.apply(backend.points68(crop, mesh))
            estimates.append(estimate_similarity(template[ALIGN_POINTS], points[ALIGN_POINTS]))
    where = _where(head)
    if faces_detected > 1 and params.on_multiple_faces == "fail":
        raise MultipleFacesError(video, f"{faces_detected} faces in {where}")
    if not estimates:
        raise NoFaceError(video, f"no face in {where}")
    return median_similarity(estimates), faces_detected


# A frame whose face is partly out of the crop (leaving the picture) has no face where more
# of its 68 points than this lie outside: the mesh guesses the rest, and its pose row was a
# head turned 10 degrees for a frontal face. The sample's clips have at most 3 outside.
MAX_POINTS_OUTSIDE = 11


def _outside(points: np.ndarray, size: int) -> int:
    return int(((points < 0) | (points >= size)).any(axis=1).sum())


# A clip whose face can be read (``face_reading``) in fewer than this share of its frames is
# refused (``few_faces``): a face in 12 of 110 frames was written ``ok``. The sample's clips
# and EAMM's fixtures have one in every frame.
MIN_FACE_SHARE = 0.5


# A face rolled further than this (degrees) in its crop: the crop is aligned once per clip, on
# its opening frames, so a camera or head rolling past it holds the face on its side or upside
# down; the mesh follows it, but its roll wraps from -179 to 178 on the way (and a gap's
# interpolation spun the head back through upright). Upright crops read about 0.
MAX_ROLL = 90.0


def face_reading(
    crop: np.ndarray, mesh: np.ndarray | None, backend: LandmarkBackend
) -> tuple[np.ndarray, np.ndarray] | None:
    """(68 points in crop pixels, pose row in 256-crop pixels) of the tracked face ``mesh`` in
    ``crop``, None where it is no face to use: no mesh, no points (FAN's are NaN where it
    finds no face: their pose row was kept), the face leaving the picture (more than
    MAX_POINTS_OUTSIDE of its points outside the crop), or rolled past MAX_ROLL.
    Preprocessing and generation's emotion and pose videos read faces alike."""
    if mesh is None:
        return None
    size = crop.shape[0]
    points = backend.points68(crop, mesh)
    if (
        points is None
        or not np.isfinite(points).all()
        or _outside(points, size) > MAX_POINTS_OUTSIDE
    ):
        return None
    row = pose_row(mesh * (TEMPLATE_SIZE / size))
    if abs(float(row[2])) > MAX_ROLL:
        return None
    return points, row


# A cut: two consecutive frames with a face whose 64-px grey thumbnails differ (mean absolute
# difference) by at least CUT_MIN_CHANGE grey levels and CUT_SPIKE times the change just before
# and after it (a flash changes the picture twice in a row, a dropped frame about 2x; frames
# the 25-fps resampling repeats are passed over, and the change around counts at least one
# level: a 12.5-fps clip's every change had nothing around it).
# Continuous clips peak at 2.8x (the sample's 192, EAMM's fixtures under 8 levels); hard cuts
# to another speaker measured 8.7-62x, a large second face overlaid at once 20x, a box over the
# mouth at once 17x. Such a clip was written 'ok' with two people's crops, landmarks and pose.
CUT_SPIKE = 5.0
CUT_MIN_CHANGE = 8.0


def thumbnail(crop: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)


class FrameChanges:
    """The change between consecutive frames' thumbnails (mean absolute difference), one
    thumbnail held at a time: the whole clip's thumbnails were kept, 16 KB a frame."""

    def __init__(self) -> None:
        self._last: np.ndarray | None = None
        self.values: list[float] = []

    def add(self, thumb: np.ndarray) -> None:
        if self._last is not None:
            self.values.append(float(np.abs(thumb - self._last).mean()))
        self._last = thumb


def find_cut(changes: list[float], faces: np.ndarray) -> tuple[int, float] | None:
    """(frame before the cut, its change over its neighbours') of the largest cut between two
    frames that both have a face, or None; ``changes``: ``FrameChanges.values``."""
    if not changes:
        return None
    change = np.asarray(changes)
    moved = np.flatnonzero(change > 0)  # a repeated frame changes nothing: not a neighbour
    steps = change[moved]
    around = np.maximum(np.r_[0.0, steps[:-1]], np.r_[steps[1:], 0.0])
    spike = steps / np.maximum(around, 1.0)
    cut = faces[moved] & faces[moved + 1] & (steps >= CUT_MIN_CHANGE) & (spike >= CUT_SPIKE)
    if not cut.any():
        return None
    best = int(np.argmax(np.where(cut, spike, 0.0)))
    return int(moved[best]), float(spike[best])


def _where(head: list[av.VideoFrame]) -> str:
    return "the image" if len(head) == 1 else f"the first {len(head)} frames"


def _load_audio(video: Path, audio: Path | None) -> tuple[np.ndarray, str]:
    """(16 kHz samples, "file" or "video"): the separate file when it has an audio stream,
    else the video's own. A named file that does not exist is an error, not a fallback."""
    if audio is not None and not audio.is_file():
        raise MissingFileError(audio, "audio file does not exist")
    if audio is not None:
        try:
            return load_audio_16k_mono(audio), "file"
        except NoAudioError:
            pass
    try:
        return load_audio_16k_mono(video, stream_from_video=True), "video"
    except NoAudioError:
        where = f" (nor in {audio})" if audio is not None else ""
        raise NoAudioError(video, f"no audio stream{where}") from None


class OutputFolderError(EammError):
    """The clip's output folder cannot be written here."""

    code = "output_not_writable"


def _check_replaceable(out: Path) -> None:
    """The run replaces ``out`` whole: refuse a file, or a folder holding anything but an
    earlier run's outputs (a user's folder, the input clip itself), before any work."""
    check_replaceable(
        out,
        OUTPUT_FILES,
        "the clip's output folder",
        "a clip's outputs",
        "an earlier output folder",
    )


def _staging_dir(out: Path) -> Path:
    """A folder of this run's own beside ``out``: two runs on one clip never write into each
    other's. A folder we may not write in is one line naming it, before any work."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise OutputFolderError(
            f"{out.parent}: cannot write the clip's output folder here ({err.strerror or err})"
        ) from err
    tmp.chmod(folder_mode())  # the clip's folder, as any other (mkdtemp makes 0700)
    return tmp


def preprocess_clip(
    video: str | Path,
    out_dir: str | Path,
    audio: str | Path | None = None,
    params: PreprocessParams | None = None,
    models: FaceModels | None = None,
    backend: LandmarkBackend | None = None,
) -> ClipResult:
    """Write the five outputs of one clip to ``out_dir`` or raise a ClipError/MediaError.

    Pass ``models``/``backend`` to reuse loaded models across clips (one set per worker).
    """
    start = time.perf_counter()
    params = params or PreprocessParams()
    video, out = Path(video), real_folder(Path(out_dir))
    _check_replaceable(out)
    audio = Path(audio) if audio is not None else None
    template = load_template(params.template, params.crop_size)
    container, stream = open_video(video, params.decoder_threads)
    info = stream_info(stream)
    container.close()
    samples, audio_source = _load_audio(video, audio)
    tmp = _staging_dir(out)
    own_models = models is None
    try:
        models = models or FaceModels.from_params(params.landmarks)
        backend = backend or make_backend(
            params.landmarks.backend, params.landmarks.fan_weights_dir
        )
        counter = _Counter(decode_frames(video, params.decoder_threads))
        frames = resample_fps(iter(counter), params.fps, info.fps)
        head = list(islice(frames, params.detect_frames))
        transform, faces_detected = clip_transform(head, video, template, params, models, backend)

        size = params.crop_size
        landmarks, poses, changes = [], [], FrameChanges()
        models.reset_tracking()
        with crop_writer(tmp / "frames.mp4", params) as writer:
            for frame in chain(head, frames):
                crop = warp_to_crop(frame, transform.matrix, size)
                writer.write(crop)
                changes.add(thumbnail(crop))
                face = face_reading(crop, models.track(crop), backend)
                if face is None:
                    landmarks.append(np.full((68, 2), np.nan, np.float32))
                    poses.append(np.full(7, np.nan, np.float32))
                else:
                    landmarks.append(face[0])
                    poses.append(face[1])
        num_frames = len(landmarks)
        if num_frames < params.min_frames:
            raise TooShortError(
                video, f"{num_frames} frames at {params.fps} fps, fewer than {params.min_frames}"
            )
        faces = np.isfinite(np.stack(poses)).all(axis=1)
        if (cut := find_cut(changes.values, faces)) is not None:
            frame, ratio = cut
            raise SceneCutError(
                video, f"the picture changes all at once at {(frame + 1) / params.fps:.2f} s "
                f"({ratio:.0f}x the change around it: a cut to another shot or face, or "
                "something covering the face at once): trim the clip there"
            )  # fmt: skip
        if faces.mean() < MIN_FACE_SHARE:
            raise FewFacesError(
                video, f"a face in {faces.sum()} of {num_frames} frames, fewer than "
                f"{MIN_FACE_SHARE:.0%} (none found, leaving the picture or rolled past "
                f"{MAX_ROLL:g} degrees): trim the clip to where the face shows"
            )  # fmt: skip

        per_frame = AUDIO_RATE // params.fps
        target = num_frames * per_frame
        if abs(target - len(samples)) > params.max_av_mismatch_s * AUDIO_RATE:
            # the separate audio file is the one to name: the video is the reference
            raise AVMismatchError(
                audio if audio is not None and audio_source == "file" else video,
                f"audio is {len(samples) / AUDIO_RATE:.2f} s but video "
                f"{target / AUDIO_RATE:.2f} s (tolerance {params.max_av_mismatch_s} s)",
            )
        samples, diff = fit_length(samples, target)
        end_pad = end_pad_for_frames(target, num_frames, params.fps, AUDIO_RATE)
        mfcc = mfcc_windows(samples, extra_end_pad=end_pad)[:num_frames]
        write_wav_s16(samples, tmp / "audio.wav", AUDIO_RATE)
        np.save(tmp / "mfcc.npy", mfcc.astype(np.float32))
        np.save(tmp / "landmarks.npy", np.stack(landmarks).astype(np.float32))
        np.save(tmp / "pose.npy", np.stack(poses).astype(np.float32))
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if own_models and models is not None:
            models.close()
    return ClipResult(
        video=str(video),
        audio=str(audio) if audio is not None else None,
        out_dir=str(out),
        num_frames=num_frames,
        num_windows=int(mfcc.shape[0]),
        input_frames=counter.count,
        input_fps=float(info.fps),
        width=info.width,
        height=info.height,
        faces_detected=faces_detected,
        frames_with_face=int(sum(np.isfinite(p[0]) for p in poses)),
        audio_source=audio_source,
        audio_diff_samples=diff,
        mfcc_end_pad=end_pad,
        transform=tuple(float(v) for v in transform.matrix.ravel()),
        landmark_backend=f"{backend.name}/{models.mesh_engine}",  # 68 points / face mesh
        seconds=time.perf_counter() - start,
    )


__all__ = ["OUTPUT_FILES", "ClipResult", "MediaError", "preprocess_clip"]
