"""Typed views of ``params.yaml`` sections (one pydantic model per DVC stage group)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eamm.errors import EammError

MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
LRW_SPLITS = ("train", "val", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleMeadClip(_Strict):
    emotion: Literal[MEAD_EMOTIONS]  # type: ignore[valid-type]
    level: int = Field(ge=1, le=3)
    utterance: str = Field(pattern=r"^\d{3}$")


class SampleMead(_Strict):
    speakers: list[str] = Field(min_length=1)
    clips: list[SampleMeadClip] = Field(min_length=1)
    duration_s: tuple[float, float] = (1.4, 2.0)
    width: int = 1920
    height: int = 1080
    fps: int = 30
    audio_rate: int = 48000
    crf: int = 23


class SampleLrw(_Strict):
    words: list[str] = Field(min_length=1)
    clips_per_split: dict[Literal["train", "val", "test"], int]
    num_frames: int = 29
    size: int = 256
    fps: int = 25
    audio_rate: int = 16000
    crf: int = 20


class SampleDataParams(_Strict):
    seed: int = 0
    mead: SampleMead
    lrw: SampleLrw


def load_section(params_path: str | Path, section: str, model: type[BaseModel]) -> BaseModel:
    """Validate one top-level section of a params file; errors name the file and the key."""
    path = Path(params_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise EammError(f"{path}: cannot read params ({err})") from None
    if section not in data:
        raise EammError(f"{path}: missing section '{section}'")
    try:
        return model.model_validate(data[section])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in (section, *first["loc"]))
        raise EammError(f"{path}: bad value for {where}: {first['msg']}") from None
