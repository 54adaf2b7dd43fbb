"""The EAMM networks built from the ``model`` params section's size profile: the one place
training and generation construct them, so both build the same modules."""

from __future__ import annotations

import torch

from eamm.errors import EammError
from eamm.models.audio2kp import AudioKeypointHead, AudioToFacialDynamics
from eamm.models.emotion import EmotionDisplacement
from eamm.models.generator import OcclusionAwareGenerator
from eamm.models.keypoint_detector import KPDetector


def profile(model: dict) -> dict:
    """The active size profile of the ``model`` params section."""
    name = model["profile"]
    if name not in model["profiles"]:
        raise EammError(f"params: model.profile '{name}' is not in model.profiles")
    return model["profiles"][name]


def build_networks(sizes: dict) -> dict[str, torch.nn.Module]:
    common = sizes["common"]
    return {
        "kp_detector": KPDetector(**common, **sizes["kp_detector"]),
        "generator": OcclusionAwareGenerator(
            num_channels=common["num_channels"], num_kp=common["num_kp"], **sizes["generator"]
        ),
        **build_audio_networks(sizes),
    }


def build_audio_networks(sizes: dict) -> dict[str, torch.nn.Module]:
    """The audio branch alone (stages 1 and 2 train it): its feature network and keypoint head."""
    return {
        "audio_feature": AudioToFacialDynamics(**sizes["audio"]),
        "kp_detector_a": AudioKeypointHead(num_kp=sizes["common"]["num_kp"], **sizes["audio_head"]),
    }


def build_emotion_net(sizes: dict, num_emotion_kp: int) -> torch.nn.Module:
    return EmotionDisplacement(num_emotion_kp=num_emotion_kp, **sizes["emotion"])
