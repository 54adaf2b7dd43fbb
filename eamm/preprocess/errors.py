"""Why a clip cannot be processed. Each error has a stable ``code`` for manifests and a
message naming the file and the reason.

Two classes of failure: a property of the clip (bad media, no face: a ``ClipError`` or other
``MediaError``, recorded as a failed row and not retried until the clip or the params change)
and a fault of the run (disk full, I/O error, out of memory, a killed worker: ``run_fault``
names it; retried, never recorded, redone by the next run).
"""

from __future__ import annotations

import os

from eamm.errors import EammError, EncoderError, MediaError, MissingToolError
from eamm.manifest import RUN_FAULT_ERRNOS, run_fault_reason


class ClipError(MediaError):
    code = "clip_error"


class NoFaceError(ClipError):
    code = "no_face"


class MultipleFacesError(ClipError):
    code = "multiple_faces"


class SceneCutError(ClipError):
    """A hard cut inside the clip (another shot, another face): one alignment and one track
    per clip would mix the two."""

    code = "scene_cut"


class UpsideDownError(ClipError):
    """The face is stored upside down (a turned camera without rotation metadata): the mesh
    fits an upright face to it anyway, and its crops, landmarks and pose were garbage."""

    code = "upside_down"


class FewFacesError(ClipError):
    """A face in fewer than MIN_FACE_SHARE of the frames (the camera pans away, the face
    leaves the picture): training samples frames uniformly, so most of its crops had none."""

    code = "few_faces"


class TooShortError(ClipError):
    code = "too_short"


class AVMismatchError(ClipError):
    code = "av_length_mismatch"


def run_fault(err: BaseException) -> str | None:
    """The reason ``err`` is a fault of the run rather than of the clip, else None.

    Media errors often wrap the OSError that caused them, so the whole chain is searched; an
    ffmpeg subprocess only reports text, so the message is searched too.
    """
    seen: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in seen:
        if isinstance(cause, MemoryError):
            return "out of memory (MemoryError)"
        if isinstance(cause, MissingToolError):  # the machine's ffmpeg, not the clip's media
            return str(cause)
        if isinstance(cause, EncoderError):
            return cause.reason
        if isinstance(cause, OSError) and cause.errno in RUN_FAULT_ERRNOS:
            return os.strerror(cause.errno)
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return run_fault_reason(str(err))


def describe_faults(faults: dict[str, str], listed: int = 5) -> str:
    """One line: the clips left unprocessed by run faults, grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for clip_id, reason in sorted(faults.items()):
        by_reason.setdefault(reason, []).append(clip_id)
    parts = []
    for reason, ids in by_reason.items():
        more = f" and {len(ids) - listed} more" if len(ids) > listed else ""
        parts.append(f"{reason}: {len(ids)} clips ({', '.join(ids[:listed])}{more})")
    return (
        f"{len(faults)} clips not processed because of the run, not the clips "
        f"(the next run redoes them): {'; '.join(parts)}"
    )


class RunFaults(EammError):
    """Clips of a batch left unprocessed by run faults (``{clip_id: reason}``), with the
    results of the batch's other clips, so a failed batch loses no finished work."""

    def __init__(self, faults: dict[str, str], results: list[tuple[dict, bool]]) -> None:
        super().__init__(faults, results)
        self.faults, self.results = faults, results

    def __str__(self) -> str:
        return describe_faults(self.faults)
