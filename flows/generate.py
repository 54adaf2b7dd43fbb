"""Flow: photo + speech + emotion video -> emotional talking-face video (reference section 4)."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import flow

from eamm.config import GenerateParams, PreprocessParams, load_section
from eamm.generate import GenerationResult
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
    params_path: str = "params.yaml",
) -> GenerationResult:
    params = load_section(params_path, "generate", GenerateParams)
    preprocess = load_section(params_path, "preprocess", PreprocessParams)
    model = yaml.safe_load(Path(params_path).read_text()).get("model", {})
    return generate_task(
        photo, audio, emotion_video, out, checkpoints, pose, pose_video, params, preprocess, model
    )
