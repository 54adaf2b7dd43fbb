"""The pipeline's own MEAD emotion classifier, the judge of emotion accuracy.

EAMM's paper reports an emotion accuracy without naming its classifier, and later papers use
Emotion-FAN weights from a Drive link (field notes 6). We train a small CNN on our aligned
crops instead, so the score is reproducible and versioned with the data it was trained on.
Per-frame logits are averaged over the frames of a clip (frame attention reduced to a mean).
"""

from __future__ import annotations

import torch
from torch import nn

from eamm.config import MEAD_EMOTIONS


def conv_block(in_features: int, out_features: int, stride: int | tuple[int, int] = 2) -> nn.Module:
    """3x3 conv, BatchNorm, ReLU; stride 2 halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(in_features, out_features, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_features),
        nn.ReLU(inplace=True),
    )


def conv_trunk(
    in_features: int,
    block_expansion: int,
    num_blocks: int,
    max_features: int,
    input_hw: tuple[int, int] | None = None,
):
    """Stride-2 blocks doubling the width up to ``max_features``, then global average pooling,
    or, given the fixed ``input_hw``, a flattening that keeps where each feature was (the audio
    stream needs the time axis); returns (trunk, output features)."""
    layers, width = [], in_features
    for i in range(num_blocks):
        out = min(max_features, block_expansion * 2**i)
        layers.append(conv_block(width, out))
        width = out
    if input_hw is None:
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), width
    h, w = input_hw
    for _ in range(num_blocks):
        h, w = (h + 1) // 2, (w + 1) // 2
    return nn.Sequential(*layers, nn.Flatten()), width * h * w


class EmotionClassifier(nn.Module):
    """Frames (B, 3, H, W) or clips (B, T, 3, H, W) in [0, 1] -> logits (B, 8) over
    ``MEAD_EMOTIONS`` (EAMM's alphabetical label order)."""

    def __init__(
        self,
        num_classes: int = len(MEAD_EMOTIONS),
        block_expansion: int = 32,
        num_blocks: int = 5,
        max_features: int = 512,
        dropout: float = 0.2,
        input_size: int | None = None,
    ) -> None:
        """``input_size``: the fixed crop size, for a head that sees where each feature is
        (brow above or below its rest height) instead of their average; None: global pooling."""
        super().__init__()
        hw = None if input_size is None else (input_size, input_size)
        self.trunk, width = conv_trunk(3, block_expansion, num_blocks, max_features, hw)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() == 4:
            return self.head(self.trunk(frames))
        b, t = frames.shape[:2]
        logits = self.head(self.trunk(frames.flatten(0, 1)))
        return logits.view(b, t, -1).mean(dim=1)
