"""Flow: photo + speech + emotion video -> emotional talking-face video (reference section 4)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.logging import get_run_logger

import flows.local  # noqa: F401  (sets Prefect up before a flow runs)
from eamm.generate import GenerationResult
from eamm.runtime import generate_settings
from tasks.generate import generate_task


@flow(name="generate")
def generate_flow(
    photo: str,
    audio: str,
    out: str,
    emotion_video: str | None = None,
    checkpoints: str = "models",
    pose: str | None = None,
    pose_video: str | None = None,
    params_path: str | None = "params.yaml",
) -> GenerationResult:
    """One video through the generate task; ``params_path`` None: the package's defaults. Its
    notes (fallbacks, repaired input) go to the run's log: a deployment has no console."""
    settings = generate_settings(Path(params_path) if params_path else None)
    result = generate_task(
        photo, audio, emotion_video, out, checkpoints, pose, pose_video, **settings.arguments
    )
    logger = get_run_logger()
    for note in result.notes:
        logger.warning(note)
    return result
