"""The four training stages (reference 3.0-3.4), each a loss function over one batch.

Speed (same model, same losses as EAMM): the T frames of a clip go through the convolutional
parts as one batch (B*T), teachers run in eval mode under no_grad, grids are cached on the
device (eamm.models.util), images are only rendered where a loss needs them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eamm.models import (
    AudioKeypointHead,
    AudioToFacialDynamics,
    EmotionDisplacement,
    ImagePyramide,
    KPDetector,
    OcclusionAwareGenerator,
    Vgg19Features,
    pyramid_perceptual_loss,
)
from eamm.train.equivariance import RandomTPS


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B*T, ...)."""
    return x.reshape(-1, *x.shape[2:])


def _kp_l1(pred: dict, target: dict, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: (target[k].detach() - pred[k]).abs().mean() for k in keys}


def _keypoints_l1(diff: torch.Tensor, reduction: str) -> torch.Tensor:
    """mean |diff| of each keypoint (dim 1 of (N, K, ...)), summed or averaged over the K
    keypoints (each has as many elements, so the sum is K x the overall mean)."""
    l1 = diff.abs().mean()
    return l1 * diff.shape[1] if reduction == "sum" else l1


def _keypoint_image(frame: torch.Tensor, *keypoints: torch.Tensor) -> np.ndarray:
    """One frame (3, H, W) with keypoint sets (K, 2) in [-1, 1] drawn in green, red, blue."""
    import cv2

    image = frame.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
    image = np.ascontiguousarray(image.astype(np.uint8))
    size = image.shape[1]
    for colour, kp in zip(((0, 255, 0), (255, 0, 0), (0, 0, 255)), keypoints, strict=False):
        for x, y in (kp.detach().float().cpu().numpy() + 1) * (size - 1) / 2:
            cv2.circle(image, (round(float(x)), round(float(y))), max(1, size // 64), colour, -1)
    return image


def _grid(*rows: torch.Tensor) -> np.ndarray:
    """Side-by-side uint8 image of the first sample of each (N, 3, H, W) tensor."""
    tiles = [r[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() for r in rows]
    return (np.concatenate(tiles, axis=1) * 255).astype(np.uint8)


class PerceptualLoss(nn.Module):
    """The reconstruction loss on an image pyramid: VGG19 perceptual with per-layer weights
    (FOMM's and EAMM's) plus an L1 on the pyramid's pixels weighted ``pixel`` (ours, 0 in
    EAMM's recipe). With every layer weight 0 no VGG19 is built: on CPU a 64-px VGG19 costs
    about 6x the networks it trains, so the demo learns from the pixel term alone."""

    def __init__(
        self,
        scales: list[float],
        weights: list[float],
        vgg_weights: str | None,
        pixel: float = 0.0,
    ):
        super().__init__()
        self.vgg = Vgg19Features.from_weights(vgg_weights) if any(weights) else None
        self.pyramid = ImagePyramide(scales, 3)
        self.weights, self.pixel = weights, pixel

    def forward(self, prediction: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms by name: ``perceptual`` and/or ``pixel`` (those with a weight)."""
        terms = {}
        if self.vgg is not None:
            terms["perceptual"] = pyramid_perceptual_loss(
                prediction, real, self.vgg, self.pyramid, self.weights
            )
        if self.pixel:
            pred, target = self.pyramid(prediction), self.pyramid(real)
            terms["pixel"] = self.pixel * sum(
                (pred[k] - target[k].detach()).abs().mean() for k in pred
            )
        return terms


def mouth_l1(prediction: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 over the masked pixels (the driving frame's mouth box, ``FommPairs``): the mouth
    is a few pixels at 64 px, so the whole-frame losses barely see it open and close."""
    mask = mask.to(prediction.dtype)
    area = mask.sum() * prediction.shape[1]
    return ((prediction - real.detach()).abs() * mask).sum() / area.clamp(min=1.0)


def landmark_l1(keypoints: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean L1 between keypoints (B, K, 2) and their landmarks (B, K, 2, NaN: no face), over the
    found ones: puts FOMM's keypoints on the parts that speech and expression move, where a
    few minutes of unsupervised training leaves them following the head alone."""
    found = torch.isfinite(targets)
    diff = (keypoints - torch.nan_to_num(targets)).abs() * found
    return diff.sum() / found.sum().clamp(min=1)


def fomm_losses(
    kp_detector: KPDetector,
    generator: OcclusionAwareGenerator,
    perceptual: PerceptualLoss,
    weights: dict,
    seed: int,
):
    """FOMM base: reconstruct the driving frame from the source with both frames' keypoints;
    pyramid perceptual loss plus equivariance of keypoints and jacobians under a random TPS."""

    def loss_fn(batch: dict, step: int):
        source, driving = batch["source"], batch["driving"]
        kp_source = kp_detector(source)
        kp_driving = kp_detector(driving)
        out = generator(source, kp_source=kp_source, kp_driving=kp_driving)
        losses = perceptual(out["prediction"], driving)
        if weights.get("mouth", 0):
            mouth = mouth_l1(out["prediction"], driving, batch["mouth"])
            losses["mouth"] = weights["mouth"] * mouth
        if weights.get("landmarks", 0):
            points = batch["landmarks"].to(kp_source["value"])
            losses["landmarks"] = weights["landmarks"] * (
                landmark_l1(kp_source["value"], points[:, 0])
                + landmark_l1(kp_driving["value"], points[:, 1])
            )
        if weights.get("equivariance_value", 0) or weights.get("equivariance_jacobian", 0):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
            tps = RandomTPS(driving.shape[0], device=driving.device, generator=gen)
            transformed = kp_detector(tps.transform_frame(driving, generator.align_corners))
            warped = tps.warp_coordinates(transformed["value"])
            losses["equivariance_value"] = (
                weights.get("equivariance_value", 0) * (kp_driving["value"] - warped).abs().mean()
            )
            jac = torch.matmul(tps.jacobian(transformed["value"]), transformed["jacobian"])
            value = torch.matmul(torch.inverse(kp_driving["jacobian"].float()), jac.float())
            eye = torch.eye(2, device=value.device).view(1, 1, 2, 2)
            losses["equivariance_jacobian"] = (
                weights.get("equivariance_jacobian", 0) * (eye - value).abs().mean()
            )
        return losses, _grid(source, driving, out["prediction"])

    return loss_fn


def audio_keypoints(
    audio_net: AudioToFacialDynamics,
    head: AudioKeypointHead,
    batch: dict,
    audio_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Audio-driven keypoints of every frame: (B*T, K, ...)."""
    feature = audio_net(
        batch["example_image"],
        batch["driving_audio"],
        batch["driving_pose"],
        audio_weight=audio_weight,
    )
    return head(_flat(feature))


def a2fd_losses(
    teacher: KPDetector,
    audio_net: AudioToFacialDynamics,
    head: AudioKeypointHead,
    weights: dict,
    generator: OcclusionAwareGenerator | None = None,
    perceptual: PerceptualLoss | None = None,
    render_every: int = 4,
):
    """Stage 1 (and stage 2 with a generator): audio keypoints imitate the frozen teacher's
    keypoints, heatmaps and jacobians of the driving frames; stage 2 also renders frames
    0, 4, 8, 12 from the audio keypoints and adds the perceptual loss."""
    w_audio = weights.get("audio", 10.0)
    w_heatmap = weights.get("heatmap", 100.0)

    def loss_fn(batch: dict, step: int):
        driving = _flat(batch["driving"])
        with torch.no_grad():
            target = teacher(driving)
        pred = audio_keypoints(audio_net, head, batch)
        l1 = _kp_l1(pred, target, ("value", "heatmap", "jacobian"))
        losses = {
            "value": w_audio * l1["value"],
            "heatmap": w_audio * w_heatmap * l1["heatmap"],
            "jacobian": w_audio * l1["jacobian"],
        }
        grid = _keypoint_image(driving[0], target["value"][0], pred["value"][0])
        if generator is not None and perceptual is not None:
            b, t = batch["driving"].shape[:2]
            frames = torch.arange(0, t, render_every, device=driving.device)
            with torch.no_grad():
                kp_source = teacher(batch["example_image"])
            pick = (torch.arange(b, device=driving.device)[:, None] * t + frames[None]).reshape(-1)
            n = len(frames)
            source = batch["example_image"].repeat_interleave(n, dim=0)
            src_kp = {k: v.repeat_interleave(n, dim=0) for k, v in kp_source.items()}
            drv_kp = {k: pred[k][pick] for k in ("value", "jacobian")}
            out = generator(source, kp_source=src_kp, kp_driving=drv_kp)
            losses.update(perceptual(out["prediction"], driving[pick]))
            grid = _grid(source, driving[pick], out["prediction"])
        return losses, grid

    return loss_fn


def emotion_losses(
    teacher: KPDetector,
    audio_net: AudioToFacialDynamics,
    head: AudioKeypointHead,
    emotion: EmotionDisplacement,
    emotion_kp: list[int],
    weights: dict,
    classify: bool,
    kp_reduction: str = "sum",
):
    """Stage 3: displacements for the emotion keypoints make audio keypoints match the
    teacher's (target = teacher - audio); optional emotion cross-entropy on the logits.

    Each keypoint's L1 is averaged over frames, batch and coordinates, then summed over the
    emotion keypoints (``kp_reduction="sum"``, EAMM's (1/16) sum_t sum_pairs, reference 3.4)
    or averaged (``"mean"``, 1/num_emotion_kp of it)."""
    if kp_reduction not in ("sum", "mean"):
        raise ValueError(f"kp_reduction must be 'sum' or 'mean', not {kp_reduction!r}")
    w_emo = weights.get("emo", 10.0)
    w_cls = weights.get("classify", 1.0)
    index = torch.tensor(emotion_kp)

    def loss_fn(batch: dict, step: int):
        driving = _flat(batch["driving"])
        with torch.no_grad():
            target = teacher(driving)
            audio = audio_keypoints(audio_net, head, batch)
        disp = emotion(_flat(batch["transformed_driving"]), audio["value"], audio["jacobian"])
        idx = index.to(driving.device)
        value = target["value"][:, idx] - audio["value"][:, idx] - disp["value"]
        jac = target["jacobian"][:, idx] - audio["jacobian"][:, idx] - disp["jacobian"]
        losses = {
            "value": w_emo * _keypoints_l1(value, kp_reduction),
            "jacobian": w_emo * _keypoints_l1(jac, kp_reduction),
        }
        if classify:
            labels = batch["emotion"].repeat_interleave(batch["driving"].shape[1])
            losses["classify"] = w_cls * F.cross_entropy(disp["logits"].float(), labels)
        return losses, _grid(
            batch["example_image"], batch["driving"][:, 0], batch["transformed_driving"][:, 0]
        )

    return loss_fn


@torch.no_grad()
def select_emotion_keypoints(
    teacher: KPDetector,
    audio_net: AudioToFacialDynamics,
    head: AudioKeypointHead,
    batches,
    count: int,
) -> tuple[list[int], list]:
    """The ``count`` keypoints whose teacher-minus-audio residual varies most with emotion.

    For each keypoint: the mean residual (x, y) per emotion class over the given batches of
    training clips, then the variance of those class means across classes (summed over x, y).
    EAMM's 1/4/6/8 belong to its own FOMM run; this rule re-derives them for ours.
    """
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    for batch in batches:
        target = teacher(_flat(batch["driving"]))
        audio = audio_keypoints(audio_net, head, batch)
        residual = (target["value"] - audio["value"]).float().cpu()
        labels = batch["emotion"].repeat_interleave(batch["driving"].shape[1]).cpu()
        for label in labels.unique().tolist():
            rows = residual[labels == label]
            sums[label] = sums.get(label, 0) + rows.sum(0)
            counts[label] = counts.get(label, 0) + len(rows)
    means = torch.stack([sums[k] / counts[k] for k in sorted(sums)])  # (classes, K, 2)
    score = means.var(dim=0, unbiased=False).sum(-1) if len(means) > 1 else means.abs().sum((0, 2))
    order = torch.argsort(score, descending=True)[:count]
    return sorted(order.tolist()), score.tolist()
