"""EAMM networks (FOMM layout: one network per file, shared blocks in ``util``).

Constructors take keyword hyper-parameters named like FOMM's / EAMM's YAML keys, with defaults equal
to the reference (vox-256) values; see ``eamm-reference.md`` section 2.
"""

from eamm.models.audio2kp import AudioKeypointHead, AudioToFacialDynamics
from eamm.models.dense_motion import DenseMotionNetwork
from eamm.models.discriminator import Discriminator, MultiScaleDiscriminator
from eamm.models.emotion import EmotionDisplacement
from eamm.models.generator import DENSE_MOTION_PARAMS, OcclusionAwareGenerator
from eamm.models.keypoint_detector import KeypointHead, KPDetector
from eamm.models.perceptual import ImagePyramide, Vgg19Features, pyramid_perceptual_loss

__all__ = [
    "DENSE_MOTION_PARAMS",
    "AudioKeypointHead",
    "AudioToFacialDynamics",
    "DenseMotionNetwork",
    "Discriminator",
    "EmotionDisplacement",
    "ImagePyramide",
    "KPDetector",
    "KeypointHead",
    "MultiScaleDiscriminator",
    "OcclusionAwareGenerator",
    "Vgg19Features",
    "pyramid_perceptual_loss",
]
