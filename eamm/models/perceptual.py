"""Perceptual-loss helpers: VGG19 features, image pyramid, pyramid perceptual loss.

Reference: ``eamm-reference.md`` 2.8 (``Vgg19``, ``ImagePyramide``) and 3.3 (the stage-2 loss).
VGG19 is written out here (the torchvision wheels built for a CPU-only torch are not on PyPI);
its layers carry torchvision's ``features.<index>`` names, so a torchvision ``vgg19`` state dict
loads into it. :func:`find_vgg19_weights` finds the ImageNet weights the way torchvision's
``VGG19_Weights.IMAGENET1K_V1`` does: the same file in torch hub's cache, downloaded once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from eamm.errors import EammError
from eamm.models.util import AntiAliasInterpolation2d

# The random stand-in VGG19 (no ImageNet weights: the demo's profile) draws from this seed
# alone: it was the global stream after the networks built before it, so an edit to the audio
# network's sizes changed FOMM's loss though FOMM resumed (``profile_sections``).
STANDIN_SEED = 19

__all__ = [
    "VGG19_IMAGENET_URL",
    "VGG_STANDIN",
    "ImagePyramide",
    "Vgg19Features",
    "find_vgg19_weights",
    "imagenet_vgg19_cache",
    "pyramid_perceptual_loss",
]

# torchvision.models.VGG19_Weights.IMAGENET1K_V1.url; torch hub keeps it under this file name, and
# the 8 hex digits in it are the start of the file's SHA-256 (checked on download).
VGG19_IMAGENET_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"  # torchvision names its files by their SHA-256's start


@functools.lru_cache(maxsize=4)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, once per version of it: ``eamm train`` finds the weights before
    Prefect starts and again when it builds the loss (about a second each for 548 MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _vgg_source(path: Path, where: str) -> str:
    """The source recorded for a weight file: ImageNet's only where its SHA-256 is
    torchvision's (any file with VGG19's keys and shapes, a random one too, was recorded as
    ImageNet)."""
    stat = path.stat()
    sha = _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if sha.startswith(VGG19_SHA256_PREFIX):
        return f"ImageNet VGG19 {where}"
    return f"VGG19 {where}, sha256 {sha[:8]}: not torchvision's ImageNet file"


VGG_STANDIN = "stand-in (random VGG19)"
DOWNLOAD_TIMEOUT_S = 20.0  # per network operation: an offline machine fails at once, never hangs


def imagenet_vgg19_cache() -> Path:
    """Where torch hub (and so torchvision) caches the ImageNet VGG19 weights
    (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``, by default under ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_IMAGENET_URL.rsplit("/", 1)[1]


def _download(url: str, target: Path) -> None:
    """torch hub's download (hash-checked, atomic) with a socket timeout."""
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        hash_prefix = target.stem.rsplit("-", 1)[1]
        torch.hub.download_url_to_file(url, str(target), hash_prefix, progress=True)
    finally:
        socket.setdefaulttimeout(previous)


def find_vgg19_weights(local: str | None, allow_standin: bool) -> tuple[Path | None, str]:
    """(weights file to load or None for a random stand-in, the source to record).

    In order: ``local`` (``model.perceptual.vgg_weights``); torch hub's cache; with
    ``allow_standin`` a random VGG19 (no download is tried, so the demo stays offline and
    deterministic); else a download into the cache. Without any of them: one-line
    :class:`EammError` saying what to place where.
    """
    if local is not None:
        path = Path(local).expanduser()
        if not path.is_file():
            raise EammError(f"{path}: model.perceptual.vgg_weights does not exist")
        return path, _vgg_source(path, f"from {path.name} (model.perceptual.vgg_weights)")
    cache = imagenet_vgg19_cache()
    where = f"{cache.name} (torchvision VGG19_Weights.IMAGENET1K_V1)"
    if cache.is_file():  # placed there by hand, perhaps
        return cache, _vgg_source(cache, where)
    if allow_standin:
        return None, VGG_STANDIN
    try:
        _download(VGG19_IMAGENET_URL, cache)
    except Exception as err:  # offline, refused, timed out, wrong hash: all end the same way
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise EammError(
            f"no VGG19 ImageNet weights for the perceptual loss and the download failed "
            f"({reason}): place {VGG19_IMAGENET_URL} at {cache} (torch hub's cache, "
            f"$TORCH_HOME) or set model.perceptual.vgg_weights to a local copy"
        ) from None
    return cache, f"ImageNet VGG19 {where}"  # torch hub checked its hash


# VGG19 "E" configuration up to relu5_1 (torchvision features[0:30]); "M" = 2x2 max-pool.
_VGG19_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512,
)  # fmt: skip
# End indices (exclusive) of the five slices: after relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_SLICE_ENDS = (2, 7, 12, 21, 30)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Vgg19Features(nn.Module):
    """Frozen VGG19 ``features[0:30]`` returning the 5 activations after relu1_1 .. relu5_1.

    ``forward(x (N, 3, H, W) in [0, 1])`` normalises with the ImageNet mean/std and returns a list
    of 5 tensors (64, 128, 256, 512, 512 channels at H/1, /2, /4, /8, /16). Parameters are frozen
    (``requires_grad`` False) but gradients flow to the input. ``pretrained`` tells whether
    ImageNet weights were loaded; a plain constructor keeps random weights.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                in_channels = int(v)
        assert len(layers) == _SLICE_ENDS[-1]
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.pretrained = False

    @classmethod
    def from_weights(cls, path: str | os.PathLike[str] | None) -> Vgg19Features:
        """Build the network, loading a local torchvision-format VGG19 state dict if ``path``.

        Keys ``features.<i>.weight/bias`` for i < 30 are used; others (deeper layers,
        ``classifier.*``) are ignored. With ``path`` None the weights stay random and
        ``pretrained`` is False (the perceptual loss is then only a structural stand-in).
        """
        if path is None:  # its own seed: not the draws of whatever networks came before
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(STANDIN_SEED)
                return cls()
        from eamm.weights import load_into, read_state_dict

        model = cls()
        setting, what = "model.perceptual.vgg_weights", "torchvision VGG19"
        state = read_state_dict(path, what, setting)
        own = model.state_dict()
        selected = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(selected))
        if missing:
            raise EammError(
                f"{path}: not a {what} state dict: missing {', '.join(missing[:4])}"
                + (" ..." if len(missing) > 4 else "")
                + f" ({setting})"
            )
        load_into(model, selected, path, what, setting)
        model.pretrained = True
        return model

    def train(self, mode: bool = True) -> Vgg19Features:
        # Always frozen: keep eval mode whatever the owning module asks.
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        outputs = []
        start = 0
        for end in _SLICE_ENDS:
            for i in range(start, end):
                out = self.features[i](out)
            outputs.append(out)
            start = end
        return outputs


class ImagePyramide(nn.Module):
    """Anti-aliased image pyramid (reference 2.8): ``prediction_<scale>`` for every scale.

    :param sigma: blur of :class:`AntiAliasInterpolation2d`; EAMM uses 1.5 for every scale,
        ``None`` gives FOMM's per-scale ``(1/scale - 1)/2``.
    """

    def __init__(
        self, scales: Sequence[float], num_channels: int = 3, sigma: float | None = 1.5
    ) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleDict(
            {
                str(scale).replace(".", "-"): AntiAliasInterpolation2d(num_channels, scale, sigma)
                for scale in self.scales
            }
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"prediction_" + key.replace("-", "."): down(x) for key, down in self.downs.items()}


def pyramid_perceptual_loss(
    pred: torch.Tensor,
    real: torch.Tensor,
    vgg: Vgg19Features,
    pyramid: ImagePyramide,
    weights: Sequence[float],
) -> torch.Tensor:
    """Multi-scale VGG perceptual loss (reference 3.3, FOMM ``perceptual``).

    ``sum_scales sum_l weights[l] * mean|VGG_l(pyr_s(pred)) - VGG_l(pyr_s(real))|`` with the real
    features computed without gradient. ``weights`` has one entry per VGG layer (5; EAMM stage 2:
    0.1 each, FOMM: 10 each). Returns a scalar tensor.
    """
    if len(weights) > len(_SLICE_ENDS):
        raise ValueError(f"at most {len(_SLICE_ENDS)} VGG layer weights, got {len(weights)}")
    pyramid_pred = pyramid(pred)
    with torch.no_grad():
        pyramid_real = pyramid(real)
    total = pred.new_zeros(())
    for key, image in pyramid_pred.items():
        x_vgg = vgg(image)
        with torch.no_grad():
            y_vgg = vgg(pyramid_real[key])
        for weight, a, b in zip(weights, x_vgg, y_vgg, strict=False):
            if weight:
                total = total + weight * (a - b.detach()).abs().mean()
    return total
