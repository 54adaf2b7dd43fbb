"""Audio2Facial-Dynamics network and the audio keypoint head (``eamm-reference.md`` 2.2, 2.3).

``AudioToFacialDynamics`` is EAMM's ``AT_net`` / ``AT_net2`` (the demo's ``weight`` is
``audio_weight``) without the StyleGAN2 ``generator`` that only the never-used ``jaco_net: gan``
path called (reference 2.9, 2.10); only the ``cnn`` decoder exists. ``AudioKeypointHead`` is the
live part of ``KPDetector_a``: its unused ``predictor`` Hourglass and ``down`` are left out. To load
an EAMM checkpoint, drop the ``generator.*`` keys of ``audio_feature`` and the ``predictor.*`` and
``down.weight`` keys of ``kp_detector_a``; everything else keeps EAMM's names (including the
original spelling ``audio_eocder``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from eamm.models.keypoint_detector import KeypointHead
from eamm.models.util import DownBlock2d, conv2d

__all__ = ["AudioKeypointHead", "AudioToFacialDynamics"]


class AudioToFacialDynamics(nn.Module):
    """Map (identity image, MFCC windows, head poses) to per-frame keypoint feature maps (2.2).

    1. Image encoder: log2(image_size) DownBlock2d, channels min(image_max_features,
       image_block_expansion * 2^(i+1)) (4 .. 512), down to 1x1 -> identity vector (512).
    2. Audio encoder per frame on (1, mfcc_window, mfcc_coeffs) = (1, 28, 12): conv blocks
       ``audio_channels`` with a 3x3 max-pool of stride (1, 2) after the second and one of stride
       2 after the last -> flatten (12288) -> Linear ``audio_hidden`` -> ReLU -> Linear
       ``audio_features`` -> ReLU (256), multiplied by ``audio_weight``.
    3. Pose encoder per frame: Linear pose_dim -> pose_hidden -> ReLU -> pose_features -> ReLU.
    4. LSTM (batch_first, zero initial state) over the concatenated per-frame features (1024).
    5. Decoder per frame from (lstm_hidden, 1, 1): ConvTranspose k6 s2 p1 (-> 4x4) then k4 s2 p1
       (x2 each) through ``decoder_channels`` with BN-ReLU between, last to ``out_features``
       without activation: (35, 64, 64) at the defaults, the shape of the KPDetector hourglass map.

    ``forward(example_image (B, 3, S, S), audio (B, T, 28, 12), pose (B, T, 6),
    audio_weight=1.0)`` returns (B, T, out_features, 64, 64). 35,290,339 parameters at the
    defaults (EAMM's 38,757,243 less the 3,466,904 of the dead StyleGAN2 generator).

    The per-frame encoders and the decoder run on all B*T frames as one batch, not in a loop over
    t like EAMM. In eval mode the result is the same; in train mode BatchNorm takes its batch
    statistics over the B*T frames (EAMM: over the B samples of one time step, updating the
    running statistics T times per forward).
    """

    def __init__(
        self,
        *,
        num_channels: int = 3,
        image_size: int = 256,
        image_block_expansion: int = 2,
        image_max_features: int = 512,
        mfcc_window: int = 28,
        mfcc_coeffs: int = 12,
        audio_channels: Sequence[int] = (64, 128, 256, 256, 512),
        audio_hidden: int = 2048,
        audio_features: int = 256,
        pose_dim: int = 6,
        pose_hidden: int = 128,
        pose_features: int = 256,
        lstm_hidden: int = 256,
        lstm_layers: int = 3,
        decoder_channels: Sequence[int] = (256, 128, 128, 128),
        out_features: int = 35,
        pose_center: Sequence[float] | None = None,
        pose_scale: Sequence[float] | None = None,
    ):
        super().__init__()
        num_down = round(math.log2(image_size))
        if image_size < 2 or 2**num_down != image_size:
            raise ValueError(f"image_size must be a power of two, got {image_size}")
        if len(audio_channels) < 3:
            raise ValueError("audio_channels needs at least 3 entries (2 before the first pool)")
        if not decoder_channels:
            raise ValueError("decoder_channels must not be empty")

        def image_width(i: int) -> int:
            return min(image_max_features, image_block_expansion * (2 ** (i + 1)))

        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                num_channels if i == 0 else image_width(i - 1),
                image_width(i),
                kernel_size=3,
                padding=1,
            )
            for i in range(num_down)
        )
        image_dim = image_width(num_down - 1)

        if (pose_center is None) != (pose_scale is None):
            raise ValueError("pose_center and pose_scale go together (both or neither)")
        if pose_center is not None:
            if len(pose_center) != pose_dim or len(pose_scale) != pose_dim:
                raise ValueError(f"pose_center and pose_scale need {pose_dim} entries each")
            if min(pose_scale) <= 0:
                raise ValueError("pose_scale entries must be positive")
        # not in the state dict: the model's sizes carry them, EAMM's weights load unchanged
        self.pose_norm = pose_center is not None
        self.register_buffer("pose_center", torch.tensor(pose_center or [0.0]), persistent=False)
        self.register_buffer("pose_scale", torch.tensor(pose_scale or [1.0]), persistent=False)
        self.pose_encoder = nn.Sequential(
            nn.Linear(pose_dim, pose_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(pose_hidden, pose_features),
            nn.ReLU(inplace=True),
        )

        chans = [1, *audio_channels]
        layers: list[nn.Module] = [conv2d(chans[0], chans[1]), conv2d(chans[1], chans[2])]
        layers.append(nn.MaxPool2d(3, stride=(1, 2)))
        layers += [conv2d(chans[i], chans[i + 1]) for i in range(2, len(audio_channels))]
        layers.append(nn.MaxPool2d(3, stride=(2, 2)))
        self.audio_eocder = nn.Sequential(*layers)  # sic: EAMM's key name
        h = ((mfcc_window - 2) - 3) // 2 + 1
        w = ((mfcc_coeffs - 3) // 2 + 1 - 3) // 2 + 1
        if h < 1 or w < 1:
            raise ValueError(f"MFCC window {mfcc_window}x{mfcc_coeffs} is too small")
        self.audio_eocder_fc = nn.Sequential(
            nn.Linear(audio_channels[-1] * h * w, audio_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(audio_hidden, audio_features),
            nn.ReLU(inplace=True),
        )

        self.lstm = nn.LSTM(
            image_dim + audio_features + pose_features, lstm_hidden, lstm_layers, batch_first=True
        )

        dec: list[nn.Module] = []
        widths = [lstm_hidden, *decoder_channels]
        for i in range(len(decoder_channels)):
            kernel = 6 if i == 0 else 4
            dec += [
                nn.ConvTranspose2d(widths[i], widths[i + 1], kernel, stride=2, padding=1),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(inplace=True),
            ]
        dec.append(nn.ConvTranspose2d(widths[-1], out_features, 4, stride=2, padding=1))
        self.decon = nn.Sequential(*dec)

        self.image_size = image_size
        self.mfcc_window = mfcc_window
        self.mfcc_coeffs = mfcc_coeffs
        self.out_features = out_features

    def encode_image(self, example_image: torch.Tensor) -> torch.Tensor:
        """Identity vector (B, image_dim) of (B, C, image_size, image_size) images."""
        out = example_image
        for down_block in self.down_blocks:
            out = down_block(out)
        return out.flatten(1)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio features (N, audio_features) of (N, mfcc_window, mfcc_coeffs) MFCC windows."""
        feature = self.audio_eocder(audio.unsqueeze(1))
        return self.audio_eocder_fc(feature.flatten(1))

    def normalize_pose(self, pose: torch.Tensor) -> torch.Tensor:
        """Pose rows as the pose encoder sees them: raw (EAMM, whose translations of ~64 px
        swamp their few-pixel motion and whose scale channel, ~5e-4, is invisible), or
        ``(pose - pose_center) / pose_scale`` when the model was built with both."""
        if not self.pose_norm:
            return pose
        return (pose - self.pose_center.to(pose.dtype)) / self.pose_scale.to(pose.dtype)

    def decode(self, lstm_out: torch.Tensor) -> torch.Tensor:
        """Feature maps (N, out_features, h, w) of (N, lstm_hidden) LSTM outputs."""
        return self.decon(lstm_out[:, :, None, None])

    def forward(
        self,
        example_image: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        audio_weight: float = 1.0,
    ) -> torch.Tensor:
        return self.forward_from(example_image, audio, pose, audio_weight)[0]

    def forward_from(
        self,
        example_image: torch.Tensor,
        audio: torch.Tensor,
        pose: torch.Tensor,
        audio_weight: float = 1.0,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` continued from the LSTM ``state`` (h, c) a previous call returned (None:
        zero state), with the state after the last frame: consecutive windows of a long
        sequence give the maps of the whole sequence (the LSTM is one-directional)."""
        b, t = audio.shape[:2]
        image_feature = self.encode_image(example_image)
        audio_feature = self.encode_audio(audio.reshape(b * t, *audio.shape[2:])) * audio_weight
        pose_feature = self.pose_encoder(self.normalize_pose(pose).reshape(b * t, pose.shape[-1]))
        lstm_input = torch.cat(
            [
                image_feature[:, None].expand(b, t, image_feature.shape[-1]),
                audio_feature.view(b, t, -1),
                pose_feature.view(b, t, -1),
            ],
            dim=2,
        )
        lstm_out, state = self.lstm(lstm_input, state)
        maps = self.decode(lstm_out.reshape(b * t, -1))
        return maps.view(b, t, *maps.shape[1:]), state


class AudioKeypointHead(KeypointHead):
    """Keypoint heads on the audio feature map: the live part of EAMM's ``KPDetector_a`` (2.3).

    ``forward(feature_map (..., block_expansion + num_channels_a, 64, 64))`` returns ``value``
    (..., 10, 2), ``jacobian`` (..., 10, 2, 2) and ``heatmap`` (..., 10, 58, 58); any leading batch
    shape, e.g. (B, T, 35, 64, 64) straight from :class:`AudioToFacialDynamics`. 85,800 parameters
    (``kp.*``, ``jacobian.*``); randomly initialised, jacobian head at identity.
    """

    def __init__(
        self,
        *,
        block_expansion: int = 32,
        num_channels_a: int = 3,
        num_kp: int = 10,
        temperature: float = 0.1,
        estimate_jacobian: bool = True,
        single_jacobian_map: bool = False,
        pad: int = 0,
    ):
        super().__init__(
            in_features=block_expansion + num_channels_a,
            num_kp=num_kp,
            temperature=temperature,
            estimate_jacobian=estimate_jacobian,
            single_jacobian_map=single_jacobian_map,
            pad=pad,
        )
