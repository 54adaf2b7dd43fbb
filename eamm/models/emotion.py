"""Implicit Emotion Displacement Learner (``eamm-reference.md`` 2.4, used in stage 3, 3.4).

EAMM's ``Emotion_k`` with only its ``forward`` path (config ``type: linear_4``). Left out as dead
(reference 2.4, 2.9): ``fc`` (Linear 512->8, 4,104 parameters), ``fc_n`` (60->128->512, 73,856),
``final_4`` (Conv1d 4->4 k3 p1, MaxPool, Conv1d 4->4 k3: 104), ``final_10`` (Conv1d 4->8 k3 p1,
MaxPool, Conv1d 8->10 k3: 354) and the ``linear_10``/``linear_np_*``/``linear_4`` variants:
78,418 of EAMM's 27,888,092 parameters, leaving 27,809,674. All other names are EAMM's, so an EAMM
``emo_detector`` state dict loads after dropping the ``fc.``, ``fc_n.``, ``final_4.`` and
``final_10.`` keys.
"""

from __future__ import annotations

import torch
from torch import nn

from eamm.models.util import AntiAliasInterpolation2d, Hourglass, positional_encoding

__all__ = ["BasicBlock", "Classify", "EmotionDisplacement"]


class BasicBlock(nn.Module):
    """ResNet-18 basic block (plain ``nn.BatchNorm2d``, as in EAMM)."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Classify(nn.Module):
    """Emotion classifier on the 512-D emotion feature (EAMM ``Classify``: ``last_fc``)."""

    def __init__(self, in_features: int = 512, num_classes: int = 8):
        super().__init__()
        self.last_fc = nn.Linear(in_features, num_classes)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.last_fc(feature)


class EmotionDisplacement(nn.Module):
    """Predict additive keypoint displacements from an emotion frame and audio keypoints (2.4).

    1. anti-alias x``scale_factor`` -> Hourglass -> (N, 35, 64, 64).
    2. ResNet-18 trunk (conv 3x3 -> 64, BN, ReLU, max-pool, 4 x 2 BasicBlocks 64/128/256/512,
       global average pool) -> 512-D emotion ``feature``; ``classify`` -> ``logits`` (N, 8).
    3. Audio keypoints: [value, flattened jacobian] (N, K, 6) -> positional encoding
       (``num_freqs`` frequencies, raw input kept: 126 per keypoint) -> ``fc_p`` -> 512.
    4. ``fc_all`` on [feature, kp feature] -> 64, then the Conv1d stack ``final`` on (N, 1, 64):
       Conv1d 1 -> E/2 (k4 s2 p1), MaxPool1d 2, ReLU, Conv1d E/2 -> E (k4 s2 p1), ReLU,
       Conv1d E -> E (k3) -> (N, E, 6) with E = ``num_emotion_kp`` (EAMM: 4, channels 1-2-4-4).
    5. Rows split into ``value`` (N, E, 2) and row-major ``jacobian`` (N, E, 2, 2).

    ``forward(x (N, 3, 256, 256), value (N, K, 2), jacobian (N, K, 2, 2))`` returns ``value``,
    ``jacobian``, ``logits`` (N, num_classes) and ``feature`` (N, 512). EAMM's rows correspond
    to FOMM keypoints 1, 4, 6, 8 of the shipped checkpoint (reference 3.4).
    """

    def __init__(
        self,
        *,
        block_expansion: int = 32,
        num_channels: int = 3,
        max_features: int = 1024,
        num_blocks: int = 5,
        scale_factor: float = 0.25,
        num_classes: int = 8,
        num_kp: int = 10,
        num_emotion_kp: int = 4,
        num_freqs: int = 10,
    ):
        super().__init__()
        self.predictor = Hourglass(
            block_expansion,
            in_features=num_channels,
            max_features=max_features,
            num_blocks=num_blocks,
        )
        self.scale_factor = scale_factor
        self.down = (
            AntiAliasInterpolation2d(num_channels, scale_factor) if scale_factor != 1 else None
        )

        self.inplanes = 64
        self.conv1 = nn.Conv2d(self.predictor.out_filters, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

        self.num_freqs = num_freqs
        kp_in = num_kp * 6 * (1 + 2 * num_freqs)
        self.fc_p = nn.Sequential(
            nn.Linear(kp_in, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 512),
            nn.ReLU(inplace=True),
        )
        self.fc_all = nn.Sequential(
            nn.Linear(1024, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 64),
            nn.ReLU(inplace=True),
        )
        half = max(1, num_emotion_kp // 2)
        self.final = nn.Sequential(
            nn.Conv1d(1, half, 4, 2, 1),
            nn.MaxPool1d(2, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv1d(half, num_emotion_kp, 4, 2, 1),
            nn.ReLU(inplace=True),
            nn.Conv1d(num_emotion_kp, num_emotion_kp, 3),
        )
        self.classify = Classify(512, num_classes)
        self.num_kp = num_kp
        self.num_emotion_kp = num_emotion_kp

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        """512-D emotion feature of (N, C, H, W) frames (EAMM ``Emotion_k.feature``)."""
        if self.down is not None:
            x = self.down(x)
        f = self.maxpool(self.relu(self.bn1(self.conv1(self.predictor(x)))))
        f = self.layer4(self.layer3(self.layer2(self.layer1(f))))
        return self.avgpool(f).flatten(1)

    def forward(
        self, x: torch.Tensor, value: torch.Tensor, jacobian: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        feature = self.feature(x)
        logits = self.classify(feature)
        n = value.shape[0]
        kp_input = torch.cat([value, jacobian.reshape(n, value.shape[1], 4)], dim=2)
        kp_feature = self.fc_p(positional_encoding(kp_input, self.num_freqs).reshape(n, -1))
        fused = self.fc_all(torch.cat([feature, kp_feature], dim=1))
        result = self.final(fused.unsqueeze(1))  # (N, E, 6)
        return {
            "value": result[:, :, :2],
            "jacobian": result[:, :, 2:].reshape(n, self.num_emotion_kp, 2, 2),
            "logits": logits,
            "feature": feature,
        }
