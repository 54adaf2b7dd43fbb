"""Per-clip preprocessing: raw clip in, EAMM-ready crops, landmarks, pose, audio and MFCC out."""

from eamm.preprocess.clip import ClipResult, preprocess_clip
from eamm.preprocess.errors import ClipError

__all__ = ["ClipError", "ClipResult", "preprocess_clip"]
