"""FID: Fréchet distance between Inception-v3 pool3 features of generated and real frames.

The network is pytorch-fid's (``pytorch_fid.inception.InceptionV3``, block 3: the 2048-d pool3
features that published FIDs use), written out here because pytorch-fid builds it through
torchvision, whose PyPI wheels do not import with the CPU torch. Its modules carry torchvision's
``Inception3`` names, so pytorch-fid's weight file ``pt_inception-2015-12-05-6726825d.pth`` (the
TF Inception of the original FID code) loads into it as it is; there is no stand-in: without that
file there is no FID. Inputs as pytorch-fid feeds them: RGB in [0, 1], bilinear resize to 299,
scaled to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eamm.errors import EammError

# The file pytorch-fid (and so torch hub's cache) keeps the FID Inception weights under.
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FEATURES = 2048
INPUT_SIZE = 299


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU: torchvision's unit."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _chain(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    """``x`` through ``layers`` in order (one branch of an Inception block)."""
    for layer in layers:
        x = layer(x)
    return x


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # The TF network FID was defined on averages over the valid pixels only.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3)
        five = _chain(x, self.branch5x5_1, self.branch5x5_2)
        return torch.cat([self.branch1x1(x), five, double, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3)
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3)
        double = _chain(
            x,
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        )
        return torch.cat([self.branch1x1(x), seven, double, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = _chain(x, self.branch3x3_1, self.branch3x3_2)
        seven = _chain(
            x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4
        )
        return torch.cat([three, seven, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """The last two blocks; FID's first averages its pool branch, its second takes the max."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_1(x)
        three = torch.cat([self.branch3x3_2a(three), self.branch3x3_2b(three)], 1)
        double = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), three, double, self.branch_pool(pooled)], 1)


class FidInceptionV3(nn.Module):
    """pytorch-fid's FID Inception up to pool3; ``fc`` (1008 classes) is kept only so the weight
    file loads strictly, every key checked."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURES, 1008)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 2048) pool3 features."""
        x = F.interpolate(
            images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
        )
        x = 2 * x - 1
        x = _chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(_chain(x, self.Conv2d_3b_1x1, self.Conv2d_4a_3x3), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def load_fid_inception(
    path: str | Path, device: torch.device, setting: str = "evaluate.fid_weights"
) -> FidInceptionV3:
    """The FID network with pytorch-fid's weights from ``path``; one line naming ``setting``
    and the file when it is missing or holds something else."""
    path = Path(path)
    if not path.is_file():
        raise EammError(
            f"{setting}: {path} does not exist (pytorch-fid's {FID_WEIGHTS_NAME}; "
            "unset it to evaluate without FID)"
        )
    from eamm.weights import load_into, read_state_dict

    net = FidInceptionV3()
    load_into(net, read_state_dict(path, "FID Inception", setting), path, "FID Inception", setting)
    return net.to(device).eval()


@torch.no_grad()
def pool3_features(
    net: FidInceptionV3, frames: np.ndarray, device: torch.device, batch: int = 32
) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames -> (N, 2048) float64 features."""
    out = []
    for start in range(0, len(frames), batch):
        chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch]))
        images = chunk.to(device).permute(0, 3, 1, 2).float() / 255.0
        out.append(net(images).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURES))


def _psd_root(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance (negative rounding in its spectrum clipped)."""
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray, root_b: np.ndarray | None = None) -> float:
    """FID between two feature sets (rows are samples): |mu_a - mu_b|^2 + Tr(Sa + Sb -
    2 sqrt(Sa Sb)), the original FID code's formula. Tr sqrt(Sa Sb) is taken as Tr sqrt(Sb^1/2
    Sa Sb^1/2), whose matrix is symmetric: two eigendecompositions instead of the original's
    Schur square root (8 s a variant at 2048 features on 2 cores), and exact where fewer
    frames than features make the covariances singular, where the original adds an offset.
    ``root_b``: Sb^1/2 when already known (one reference, many variants)."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    cov_a = np.cov(a, rowvar=False)
    if root_b is None:
        root_b = _psd_root(np.cov(b, rowvar=False))
    middle = root_b @ cov_a @ root_b
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.sum(root_b * root_b) - 2 * trace_root)


class FidFeatures:
    """Features gathered per video variant while clips are scored; FID of each variant
    against the real frames at the end."""

    def __init__(self, net: FidInceptionV3, device: torch.device) -> None:
        self.net = net
        self.device = device
        self._features: dict[str, list[np.ndarray]] = {}

    def features(self, frames: np.ndarray) -> np.ndarray:
        """(N, 2048) features of ``frames``, for ``add`` (computed apart: the evaluation does it
        beside generation, and adds them in clip order)."""
        return pool3_features(self.net, frames, self.device)

    def add(self, variant: str, features: np.ndarray) -> None:
        self._features.setdefault(variant, []).append(features)

    def scores(self, real: str = "ground_truth") -> dict[str, float]:
        """{variant: FID against ``real``'s frames} for every other variant."""
        reference = np.concatenate(self._features.get(real, [np.zeros((0, FEATURES))]))
        root = _psd_root(np.cov(reference, rowvar=False)) if len(reference) >= 2 else None
        return {
            variant: frechet_distance(np.concatenate(parts), reference, root)
            for variant, parts in self._features.items()
            if variant != real
        }
