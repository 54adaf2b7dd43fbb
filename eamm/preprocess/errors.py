"""Why a clip cannot be processed. Each error has a stable ``code`` for manifests and a
message naming the file and the reason."""

from __future__ import annotations

from eamm.errors import MediaError


class ClipError(MediaError):
    code = "clip_error"


class NoFaceError(ClipError):
    code = "no_face"


class MultipleFacesError(ClipError):
    code = "multiple_faces"


class TooShortError(ClipError):
    code = "too_short"


class AVMismatchError(ClipError):
    code = "av_length_mismatch"
