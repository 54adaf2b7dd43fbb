"""Lip-sync judges: the pipeline's own audio-visual sync expert and the SyncNet v2 layout.

SyncNet's weights are research-only and not downloadable here (field notes 6), so a sync score
must also exist without them: ``SyncExpert`` is trained by the pipeline on LRW (contrastive, in
the manner of Wav2Lip's expert) on the mouth half of our aligned crops and our MFCC windows.
``SyncNetV2`` is the published SyncNet architecture (Chung & Zisserman 2016, v2 weights
``syncnet_v2.model``) for users who have the file; both score with the same offset search
(``eamm.judges.sync``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eamm.judges.emotion_classifier import conv_trunk

SYNC_WINDOW = 5  # video frames per sample, as SyncNet (0.2 s at 25 fps)
MFCC_ROWS, MFCC_COEFFS = 28, 12  # one EAMM MFCC window without c0


def mouth_half(frames: torch.Tensor) -> torch.Tensor:
    """Lower half of aligned crops (..., 3, H, W): where the template puts the mouth."""
    return frames[..., frames.shape[-2] // 2 :, :]


class SyncExpert(nn.Module):
    """Unit embeddings of 5 consecutive mouth crops (B, 5, 3, H/2, W) and of the MFCC window
    of their middle frame (B, 28, 12, EAMM's windows without c0); in sync = high cosine."""

    def __init__(
        self,
        window: int = SYNC_WINDOW,
        block_expansion: int = 32,
        num_blocks: int = 5,
        max_features: int = 512,
        audio_blocks: int = 3,
        embed_dim: int = 256,
    ) -> None:
        super().__init__()
        self.window = window
        self.video, width = conv_trunk(3 * window, block_expansion, num_blocks, max_features)
        self.video_fc = nn.Linear(width, embed_dim)
        self.audio, audio_width = conv_trunk(
            1, block_expansion, audio_blocks, max_features, input_hw=(MFCC_ROWS, MFCC_COEFFS)
        )
        self.audio_fc = nn.Linear(audio_width, embed_dim)
        # Learnable temperature and bias of the in-sync logit (SigLIP's sigmoid loss): BCE on
        # the raw cosine, as Wav2Lip's expert, trained too slowly in our checks.
        self.logit_scale = nn.Parameter(torch.tensor(10.0))
        self.logit_bias = nn.Parameter(torch.tensor(-5.0))

    def embed_video(self, mouths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.video_fc(self.video(mouths.flatten(1, 2))), dim=-1)

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_fc(self.audio(mfcc.unsqueeze(1))), dim=-1)

    def forward(self, mouths: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """In-sync logit per sample: scaled cosine similarity of the two embeddings."""
        cosine = (self.embed_video(mouths) * self.embed_audio(mfcc)).sum(dim=-1)
        return self.logit_scale * cosine + self.logit_bias


def _conv_bn(conv: nn.Module, features: int, dims: int) -> list[nn.Module]:
    norm = nn.BatchNorm2d(features) if dims == 2 else nn.BatchNorm3d(features)
    return [conv, norm, nn.ReLU(inplace=True)]


class SyncNetV2(nn.Module):
    """SyncNet v2 ("S", 1024-d embeddings) in the published layout, so a ``syncnet_v2.model``
    state dict loads by name: audio (B, 1, 13, 20) MFCC (python_speech_features defaults, 0.2 s),
    lips (B, 3, 5, 224, 224) BGR face crops with values 0-255."""

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        c2, c3 = nn.Conv2d, nn.Conv3d
        self.netcnnaud = nn.Sequential(
            *_conv_bn(c2(1, 64, 3, padding=1), 64, 2),
            nn.MaxPool2d(1, 1),
            *_conv_bn(c2(64, 192, 3, padding=1), 192, 2),
            nn.MaxPool2d(3, (1, 2)),
            *_conv_bn(c2(192, 384, 3, padding=1), 384, 2),
            *_conv_bn(c2(384, 256, 3, padding=1), 256, 2),
            *_conv_bn(c2(256, 256, 3, padding=1), 256, 2),
            nn.MaxPool2d(3, 2),
            *_conv_bn(c2(256, 512, (5, 4)), 512, 2),
        )
        self.netcnnlip = nn.Sequential(
            *_conv_bn(c3(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(c3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn(c3(256, 512, (1, 6, 6)), 512, 3),
        )
        self.netfcaud = self._fc(embed_dim)
        self.netfclip = self._fc(embed_dim)

    @staticmethod
    def _fc(embed_dim: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim)
        )

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_video(self, lips: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(lips).flatten(1))
