"""Environment checks behind ``eamm doctor``: each returns a Check, none raises."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from eamm.errors import EammError
from eamm.media.tools import tool_version
from eamm.runtime import require_writable_prefect_home

OPENCV_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-contrib-python",
    "opencv-python-headless",
    "opencv-contrib-python-headless",
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    detail = f"{platform.python_version()} ({sys.executable})"
    return Check("python", ok, detail if ok else f"{detail}: Python >= 3.10 is required")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as err:
        return Check("torch", False, f"not importable ({err}); run `make venv`")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cuda = f"CUDA {torch.version.cuda}: {torch.cuda.device_count()} GPU(s) {names}"
    else:
        cuda = "CUDA not available (CPU build or no GPU)"
    return Check("torch", True, f"{torch.__version__}; {cuda}")


def check_tool(name: str) -> Callable[[], Check]:
    def run() -> Check:
        try:
            return Check(name, True, tool_version(name))
        except EammError as err:
            return Check(name, False, str(err))

    return run


def check_opencv() -> Check:
    installed = [d for d in OPENCV_DISTRIBUTIONS if _version(d)]
    if len(installed) != 1:
        found = ", ".join(installed) or "none"
        return Check(
            "opencv", False, f"exactly one OpenCV distribution must be installed, found: {found}"
        )
    try:
        import cv2
    except ImportError as err:
        return Check("opencv", False, f"{installed[0]} installed but cv2 fails to import ({err})")
    return Check("opencv", True, f"{installed[0]} {cv2.__version__}")


def check_mediapipe() -> Check:
    """Load the face detection and face mesh graphs from the wheel and run them once."""
    try:
        import mediapipe as mp
        import numpy as np

        blank = np.zeros((192, 192, 3), dtype=np.uint8)
        with mp.solutions.face_detection.FaceDetection(model_selection=0) as detector:
            detector.process(blank)
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
            mesh.process(blank)
    except Exception as err:  # any failure here means the models cannot be used
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return Check("mediapipe", False, f"face models do not load offline: {reason}")
    return Check("mediapipe", True, f"{mp.__version__}; face detection + face mesh load offline")


def check_litert() -> Check:
    """The face mesh and detector models bare through LiteRT (``mesh_engine: litert``)."""
    try:
        import numpy as np

        from eamm.face.detect_litert import FULL_RANGE, SHORT_RANGE, LiteRtFaceDetector
        from eamm.face.mesh_litert import LiteRtMesh, Roi

        blank = np.zeros((192, 192, 3), dtype=np.uint8)
        LiteRtMesh().run(blank, Roi(96, 96, 192))
        for spec in (SHORT_RANGE, FULL_RANGE):
            LiteRtFaceDetector(spec)(blank)
    except Exception as err:  # any failure here means the litert engine cannot be used
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return Check("litert", False, f"face models through LiteRT fail: {reason}")
    version = _version("ai-edge-litert")
    return Check("litert", True, f"ai-edge-litert {version}; face mesh + detectors run")


def check_prefect() -> Check:
    version = _version("prefect")
    if version is None:
        return Check("prefect", False, "not installed; run `make venv`")
    track = os.environ.get("DO_NOT_TRACK", "")
    analytics = os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "")
    api = os.environ.get("PREFECT_API_URL") or "ephemeral (no server)"
    detail = (
        f"{version}; DO_NOT_TRACK={track or 'unset'}, "
        f"PREFECT_SERVER_ANALYTICS_ENABLED={analytics or 'unset'}, "
        f"PREFECT_HOME={os.environ.get('PREFECT_HOME', 'unset')}, API {api}"
    )
    ok = track == "1" and analytics.lower() == "false"
    if not ok:
        detail += ": telemetry must be off (DO_NOT_TRACK=1, PREFECT_SERVER_ANALYTICS_ENABLED=false)"
    if not os.environ.get("PREFECT_API_URL"):  # the temporary server's database goes there
        try:
            require_writable_prefect_home()
        except EammError as err:
            ok, detail = False, f"{detail}: {err}"
    return Check("prefect", ok, detail)


def check_dvc() -> Check:
    version = _version("dvc")
    if version is None:
        return Check("dvc", False, "not installed; run `make venv`")
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "config", "core.analytics"],
        capture_output=True,
        text=True,
    )
    repo_setting = proc.stdout.strip() if proc.returncode == 0 else ""
    env_off = os.environ.get("DVC_NO_ANALYTICS", "") not in ("", "0", "false")
    ok = repo_setting == "false" or env_off
    detail = f"{version}; core.analytics={repo_setting or 'unset'}, DVC_NO_ANALYTICS="
    detail += os.environ.get("DVC_NO_ANALYTICS", "unset")
    if not ok:
        detail += ": analytics must be off (`dvc config core.analytics false`)"
    return Check("dvc", ok, detail)


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_torch,
    check_tool("ffmpeg"),
    check_tool("ffprobe"),
    check_opencv,
    check_mediapipe,
    check_litert,
    check_prefect,
    check_dvc,
)


def run_checks() -> list[Check]:
    return [check() for check in CHECKS]
