"""Task: generate one emotional talking-face video (and its neutral and comparison videos)."""

from __future__ import annotations

from prefect import task

from eamm.config import GenerateParams, PreprocessParams
from eamm.generate import GenerationResult, generate


@task(name="generate-video")
def generate_task(
    photo: str,
    audio: str,
    emotion_video: str | None,
    out: str,
    checkpoints: str,
    pose: str | None,
    pose_video: str | None,
    params: GenerateParams,
    preprocess: PreprocessParams,
    model: dict,
) -> GenerationResult:
    return generate(
        photo,
        audio,
        emotion_video,
        out,
        checkpoints=checkpoints,
        pose=pose,
        pose_video=pose_video,
        params=params,
        preprocess=preprocess,
        fallback_model=model,
    )
