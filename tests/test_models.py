"""Networks of ``eamm.models``: shapes and parameter counts of the reference (eamm-reference.md 2),
plus tiny variants that run forward and backward on CPU."""

from __future__ import annotations

import pytest
import torch

from eamm.models import (
    AudioKeypointHead,
    AudioToFacialDynamics,
    DenseMotionNetwork,
    EmotionDisplacement,
    ImagePyramide,
    KPDetector,
    MultiScaleDiscriminator,
    OcclusionAwareGenerator,
    Vgg19Features,
    pyramid_perceptual_loss,
)
from eamm.models.util import AntiAliasInterpolation2d, make_coordinate_grid, positional_encoding

TINY_HOURGLASS = {"block_expansion": 8, "max_features": 64, "num_blocks": 3}
TINY_DENSE = {**TINY_HOURGLASS, "scale_factor": 0.25}
TINY_AUDIO = {
    "image_size": 64,
    "audio_channels": (4, 8, 8, 8, 16),
    "audio_hidden": 32,
    "audio_features": 16,
    "pose_hidden": 8,
    "pose_features": 16,
    "lstm_hidden": 16,
    "lstm_layers": 2,
    "decoder_channels": (16, 8, 8),
    "out_features": 11,
}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def kp_pair(b: int, k: int = 10, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(2).expand(b, k, 2, 2)
    kp_source = {"value": torch.rand(b, k, 2, generator=g) * 1.6 - 0.8, "jacobian": eye.clone()}
    kp_driving = {
        "value": torch.rand(b, k, 2, generator=g) * 1.6 - 0.8,
        "jacobian": eye + 0.1 * torch.randn(b, k, 2, 2, generator=g),
    }
    return kp_source, kp_driving


# --------------------------------------------------------------------------- util


def test_coordinate_grid_values_and_cache():
    grid = make_coordinate_grid(3, 5, "cpu", torch.float32)
    assert grid.shape == (3, 5, 2)
    assert torch.equal(grid[0, 0], torch.tensor([-1.0, -1.0]))
    assert torch.equal(grid[2, 4], torch.tensor([1.0, 1.0]))
    assert torch.allclose(grid[1, :, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.equal(grid[:, 2, 1], torch.tensor([-1.0, 0.0, 1.0]))
    assert make_coordinate_grid(3, 5, torch.device("cpu"), torch.float32) is grid
    assert make_coordinate_grid(3, 5, "cpu", torch.float64).dtype == torch.float64


def test_coordinate_grid_built_in_inference_mode_supports_backward():
    with torch.inference_mode():
        make_coordinate_grid(7, 9, "cpu", torch.float32)
    head = AudioKeypointHead(block_expansion=8, num_channels_a=3)
    out = head(torch.randn(2, 11, 13, 15, requires_grad=True))  # heatmap 7x9: the cached grid
    out["value"].sum().backward()


def test_positional_encoding_layout():
    x = torch.randn(2, 10, 6)
    enc = positional_encoding(x, 10)
    assert enc.shape == (2, 10, 126)
    assert torch.equal(enc[..., :6], x)
    assert torch.allclose(enc[..., 6:12], torch.sin(x))
    assert torch.allclose(enc[..., 12:18], torch.cos(x))
    assert torch.allclose(enc[..., -6:], torch.cos(512 * x))


def test_antialias_sigma():
    x = torch.rand(1, 3, 32, 32)
    eamm = AntiAliasInterpolation2d(3, 0.25)
    fomm = AntiAliasInterpolation2d(3, 0.25, sigma=None)
    assert eamm.sigma == fomm.sigma == 1.5
    assert torch.allclose(eamm(x), fomm(x))
    assert eamm(x).shape == (1, 3, 8, 8)
    assert AntiAliasInterpolation2d(3, 0.5, sigma=None).sigma == 0.5
    assert AntiAliasInterpolation2d(3, 1.0)(x) is x
    assert AntiAliasInterpolation2d(3, 1.0, sigma=None)(x) is x
    const = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(eamm(const)[..., 2:-2, 2:-2], const[..., :4, :4])  # kernel sums to 1


# --------------------------------------------------------------------------- keypoints


def test_kp_detector_tiny_forward_backward():
    det = KPDetector(**TINY_HOURGLASS)
    x = torch.rand(2, 3, 64, 64)
    out = det(x)
    assert out["value"].shape == (2, 10, 2)
    assert out["jacobian"].shape == (2, 10, 2, 2)
    assert out["heatmap"].shape == (2, 10, 10, 10)
    assert out["value"].abs().max() <= 1
    assert torch.allclose(out["heatmap"].sum((-1, -2)), torch.ones(2, 10), atol=1e-5)
    eye = torch.eye(2).expand(2, 10, 2, 2)
    assert torch.allclose(out["jacobian"], eye, atol=1e-5)  # identity at init
    (out["value"].sum() + out["jacobian"].sum()).backward()
    assert (
        det.kp.weight.grad is not None
        and det.predictor.encoder.down_blocks[0].conv.weight.grad.abs().sum() > 0
    )


def test_kp_detector_any_leading_batch():
    det = KPDetector(**TINY_HOURGLASS).eval()
    x = torch.rand(2, 3, 3, 64, 64)
    with torch.no_grad():
        out = det(x)
        flat = det(x.flatten(0, 1))
    assert out["value"].shape == (2, 3, 10, 2)
    assert out["heatmap"].shape == (2, 3, 10, 10, 10)
    for key in ("value", "jacobian", "heatmap"):
        assert torch.allclose(out[key].flatten(0, 1), flat[key], atol=1e-6)


def test_audio_keypoint_head_sequence_input():
    head = AudioKeypointHead()
    assert n_params(head) == 85_800
    assert sorted(head.state_dict()) == ["jacobian.bias", "jacobian.weight", "kp.bias", "kp.weight"]
    maps = torch.randn(1, 2, 35, 64, 64)
    with torch.no_grad():
        out = head(maps)
    assert out["value"].shape == (1, 2, 10, 2)
    assert out["jacobian"].shape == (1, 2, 10, 2, 2)
    assert out["heatmap"].shape == (1, 2, 10, 58, 58)
    assert out["value"].abs().max() <= 1
    assert torch.allclose(out["jacobian"], torch.eye(2).expand(1, 2, 10, 2, 2), atol=1e-5)


# --------------------------------------------------------------------------- motion, generator


def test_sparse_motion_identity_for_equal_keypoints():
    net = DenseMotionNetwork(**TINY_DENSE)
    kp_source, _ = kp_pair(2)
    src = torch.rand(2, 3, 16, 16)
    motion = net.create_sparse_motions(src, kp_source, kp_source)
    assert motion.shape == (2, 11, 16, 16, 2)
    grid = make_coordinate_grid(16, 16, "cpu", torch.float32)
    assert torch.allclose(motion, grid.expand_as(motion), atol=1e-6)


def test_generator_tiny_forward_backward():
    gen = OcclusionAwareGenerator(
        block_expansion=8,
        max_features=64,
        num_down_blocks=2,
        num_bottleneck_blocks=2,
        dense_motion_params=TINY_DENSE,
    )
    kp_source, kp_driving = kp_pair(2)
    kp_driving["value"].requires_grad_(True)
    out = gen(torch.rand(2, 3, 64, 64), kp_driving=kp_driving, kp_source=kp_source)
    assert out["prediction"].shape == (2, 3, 64, 64)
    assert out["mask"].shape == (2, 11, 16, 16)
    assert out["sparse_deformed"].shape == (2, 11, 3, 16, 16)
    assert out["occlusion_map"].shape == (2, 1, 16, 16)
    assert out["deformed"].shape == (2, 3, 64, 64)
    assert out["prediction"].min() >= 0 and out["prediction"].max() <= 1
    out["prediction"].mean().backward()
    assert kp_driving["value"].grad.abs().sum() > 0
    assert gen.dense_motion_network.hourglass.encoder.down_blocks[0].conv.weight.grad is not None


@pytest.mark.parametrize("align_corners", [False, True])
def test_unmoved_face_is_copied_exactly_only_with_align_corners(align_corners):
    """Equal keypoints make every sparse motion the identity grid; with ``align_corners`` the
    warps then return the source itself (the features, the dense motion's downscaled source and
    the upsampled ``deformed``), while FOMM's setting shrinks it by (w - 1) / w."""
    gen = OcclusionAwareGenerator(
        block_expansion=8,
        max_features=64,
        num_down_blocks=1,
        num_bottleneck_blocks=1,
        dense_motion_params={**TINY_HOURGLASS, "scale_factor": 0.5},
        align_corners=align_corners,
    )
    kp_source, _ = kp_pair(1)
    # a smooth image: bilinear resampling at a moved position then differs by the move only
    y, x = torch.meshgrid(torch.linspace(0, 3, 64), torch.linspace(0, 3, 64), indexing="ij")
    source = (0.5 + 0.4 * torch.sin(x + 2 * y)).expand(1, 3, 64, 64)
    with torch.no_grad():
        out = gen(source, kp_driving=kp_source, kp_source=kp_source)
        small = gen.dense_motion_network.down(source)
    deformed = out["deformed"]
    sparse = out["sparse_deformed"]
    if align_corners:
        assert torch.allclose(deformed, source, atol=1e-5)
        assert torch.allclose(sparse, small[:, None].expand_as(sparse), atol=1e-5)
    else:
        # the identity grid read as pixel edges: the copy is shrunk, off by up to ~3 % of the
        # image's range at its borders (the 32x32 deformation upsampled to 64)
        assert (deformed - source).abs().max() > 0.02
        assert (sparse - small[:, None]).abs().max() > 0.02


@pytest.mark.parametrize("align_corners", [False, True])
def test_equivariance_transform_moves_pixels_as_it_moves_points(align_corners):
    """The identity TPS leaves a frame as it is only with ``align_corners`` (FOMM's setting
    shrinks it, so the equivariance loss asked the keypoints to follow a zoom that
    ``warp_coordinates`` does not make)."""
    from eamm.train.equivariance import RandomTPS

    tps = RandomTPS(2, sigma_affine=0.0, sigma_tps=0.0)
    y, x = torch.meshgrid(torch.linspace(0, 3, 64), torch.linspace(0, 3, 64), indexing="ij")
    frame = (0.5 + 0.4 * torch.sin(x + 2 * y)).expand(2, 3, 64, 64)
    points = torch.rand(2, 10, 2) * 1.6 - 0.8
    assert torch.allclose(tps.warp_coordinates(points), points, atol=1e-6)
    moved = (tps.transform_frame(frame, align_corners) - frame).abs().max()
    assert (moved < 1e-5) if align_corners else (moved > 0.01)


def test_discriminator_tiny_forward_backward_and_sn_keys():
    disc = MultiScaleDiscriminator(scales=(1, 0.5), block_expansion=8, max_features=64)
    keys = disc.state_dict().keys()
    assert "discs.1.down_blocks.0.conv.weight_orig" in keys
    assert "discs.0-5.conv.weight_u" in keys
    pyramid = ImagePyramide((1, 0.5), 3)
    x = torch.rand(2, 3, 128, 128, requires_grad=True)
    out = disc(pyramid(x))
    assert out["prediction_map_1"].shape == (2, 1, 10, 10)
    assert [f.shape[-1] for f in out["feature_maps_1"]] == [62, 29, 13, 10]
    assert out["prediction_map_0.5"].shape == (2, 1, 2, 2)
    out["prediction_map_1"].mean().backward()
    assert x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- audio, emotion


def test_audio_to_facial_dynamics_tiny_forward_backward():
    net = AudioToFacialDynamics(**TINY_AUDIO)
    image = torch.rand(2, 3, 64, 64)
    audio = torch.randn(2, 4, 28, 12, requires_grad=True)
    out = net(image, audio, torch.randn(2, 4, 6))
    assert out.shape == (2, 4, 11, 32, 32)
    kp = AudioKeypointHead(block_expansion=8, num_channels_a=3)(out)
    assert kp["value"].shape == (2, 4, 10, 2)
    kp["value"].sum().backward()
    assert audio.grad.abs().sum() > 0
    assert net.down_blocks[0].conv.weight.grad.abs().sum() > 0


def test_audio_to_facial_dynamics_batched_frames_equal_frame_loop():
    """The B*T-frame batching equals EAMM's loop over t (eval mode: BN uses running stats)."""
    torch.manual_seed(0)
    net = AudioToFacialDynamics(**TINY_AUDIO).eval()
    image = torch.rand(2, 3, 64, 64)
    audio = torch.randn(2, 5, 28, 12) * 10
    pose = torch.randn(2, 5, 6)
    with torch.no_grad():
        out = net(image, audio, pose, audio_weight=1.6)
        image_feature = net.encode_image(image)
        steps = [
            torch.cat(
                [
                    image_feature,
                    net.encode_audio(audio[:, t]) * 1.6,
                    net.pose_encoder(pose[:, t]),
                ],
                dim=1,
            )
            for t in range(5)
        ]
        lstm_out, _ = net.lstm(torch.stack(steps, dim=1))
        expected = torch.stack([net.decode(lstm_out[:, t]) for t in range(5)], dim=1)
        # The LSTM is causal: the first 3 frames do not depend on the later ones.
        prefix = net(image, audio[:, :3], pose[:, :3], audio_weight=1.6)
        plain = net(image, audio, pose)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(prefix, out[:, :3], atol=1e-5)
    assert not torch.allclose(plain, out)


def test_pose_standardisation_is_outside_the_state_dict_and_off_by_default():
    """``pose_center``/``pose_scale`` (ours) feed the pose encoder ``(pose - c) / s``; without
    them the rows go in raw (EAMM), and the weights are interchangeable either way."""
    torch.manual_seed(0)
    center, scale = [0.0, 0.0, 0.0, 5e-4, 64.0, 72.0], [5.0, 5.0, 5.0, 3e-5, 5.0, 5.0]
    raw = AudioToFacialDynamics(**TINY_AUDIO).eval()
    norm = AudioToFacialDynamics(**TINY_AUDIO, pose_center=center, pose_scale=scale).eval()
    assert norm.state_dict().keys() == raw.state_dict().keys()
    norm.load_state_dict(raw.state_dict())
    image, audio = torch.rand(2, 3, 64, 64), torch.randn(2, 3, 28, 12)
    pose = torch.tensor(center) + torch.randn(2, 3, 6) * torch.tensor(scale)
    with torch.no_grad():
        standardised = (pose - torch.tensor(center)) / torch.tensor(scale)
        torch.testing.assert_close(norm(image, audio, pose), raw(image, audio, standardised))
        assert torch.equal(raw.normalize_pose(pose), pose)
    with pytest.raises(ValueError, match="together"):
        AudioToFacialDynamics(**TINY_AUDIO, pose_center=center)
    with pytest.raises(ValueError, match="positive"):
        AudioToFacialDynamics(**TINY_AUDIO, pose_center=center, pose_scale=[1.0] * 5 + [0.0])


def test_audio_to_facial_dynamics_rejects_bad_image_size():
    with pytest.raises(ValueError, match="power of two"):
        AudioToFacialDynamics(image_size=96)


def test_emotion_displacement_tiny_forward_backward():
    net = EmotionDisplacement(**TINY_HOURGLASS)
    value = torch.rand(3, 10, 2) * 2 - 1
    jacobian = torch.randn(3, 10, 2, 2, requires_grad=True)
    out = net(torch.rand(3, 3, 64, 64), value, jacobian)
    assert out["value"].shape == (3, 4, 2)
    assert out["jacobian"].shape == (3, 4, 2, 2)
    assert out["logits"].shape == (3, 8)
    assert out["feature"].shape == (3, 512)
    (out["value"].sum() + out["jacobian"].sum() + out["logits"].sum()).backward()
    assert jacobian.grad.abs().sum() > 0


def test_emotion_displacement_rows_follow_num_emotion_kp():
    net = EmotionDisplacement(**TINY_HOURGLASS, num_emotion_kp=10).eval()
    assert [m.out_channels for m in net.final if isinstance(m, torch.nn.Conv1d)] == [5, 10, 10]
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64), torch.rand(2, 10, 2), torch.randn(2, 10, 2, 2))
    assert out["value"].shape == (2, 10, 2)
    assert out["jacobian"].shape == (2, 10, 2, 2)
    default = EmotionDisplacement(**TINY_HOURGLASS)
    assert [m.out_channels for m in default.final if isinstance(m, torch.nn.Conv1d)] == [2, 4, 4]


# --------------------------------------------------------------------------- perceptual


def torchvision_vgg19_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision ``vgg19`` key names (all conv layers + a classifier key)."""
    g = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    cfg += [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
    state, index, in_ch = {}, 0, 3
    for v in cfg:
        if v == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(v, in_ch, 3, 3, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.randn(v, generator=g) * 0.05
        index, in_ch = index + 2, v
    state["classifier.6.bias"] = torch.zeros(1000)
    return state


def test_vgg19_loads_torchvision_state_dict(tmp_path):
    random_vgg = Vgg19Features.from_weights(None)
    assert random_vgg.pretrained is False
    assert all(not p.requires_grad for p in random_vgg.parameters())

    state = torchvision_vgg19_state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    vgg = Vgg19Features.from_weights(str(path))
    assert vgg.pretrained is True
    assert torch.equal(vgg.features[28].weight, state["features.28.weight"])
    assert torch.equal(vgg.features[0].bias, state["features.0.bias"])
    assert set(vgg.state_dict()) == {k for k in state if k.startswith("features.")} - {
        f"features.{i}.{p}" for i in (30, 32, 34) for p in ("weight", "bias")
    }
    vgg.train()
    assert not vgg.training
    outs = vgg(torch.rand(1, 3, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 2, 2),
    ]
    torch.save({"features.0.weight": state["features.0.weight"]}, tmp_path / "bad.pth")
    from eamm.errors import EammError

    with pytest.raises(EammError, match=r"bad\.pth: not a torchvision VGG19 state dict: missing"):
        Vgg19Features.from_weights(tmp_path / "bad.pth")


def test_pyramid_perceptual_loss():
    torch.manual_seed(0)
    vgg = Vgg19Features()
    pyramid = ImagePyramide([1, 0.5, 0.25, 0.125], 3)
    real = torch.rand(1, 3, 128, 128)
    pred = real.clone().requires_grad_(True)
    weights = [0.1] * 5
    assert pyramid_perceptual_loss(pred, real, vgg, pyramid, weights).item() == 0
    other = (real + 0.1 * torch.randn_like(real)).clamp(0, 1).requires_grad_(True)
    loss = pyramid_perceptual_loss(other, real, vgg, pyramid, weights)
    assert loss.item() > 0
    loss.backward()
    assert other.grad.abs().sum() > 0
    assert sorted(pyramid(real)) == [
        "prediction_0.125",
        "prediction_0.25",
        "prediction_0.5",
        "prediction_1",
    ]
    assert pyramid(real)["prediction_0.125"].shape == (1, 3, 16, 16)


# ------------------------------------------------------------------ full size (reference 2)


@pytest.mark.slow
@torch.no_grad()
def test_kp_detector_full_size():
    det = KPDetector().eval()
    assert n_params(det) == 14_215_368
    assert len(det.state_dict()) == 75
    assert "predictor.encoder.down_blocks.0.conv.weight" in det.state_dict()
    assert "down.weight" in det.state_dict()
    out = det(torch.rand(1, 3, 256, 256))
    assert out["value"].shape == (1, 10, 2)
    assert out["jacobian"].shape == (1, 10, 2, 2)
    assert out["heatmap"].shape == (1, 10, 58, 58)
    assert out["value"].abs().max() <= 1
    assert torch.allclose(out["jacobian"], torch.eye(2).expand(1, 10, 2, 2), atol=1e-5)


@pytest.mark.slow
@torch.no_grad()
def test_generator_full_size():
    gen = OcclusionAwareGenerator().eval()
    assert n_params(gen) == 45_575_391
    assert len(gen.state_dict()) == 196
    assert "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight" in gen.state_dict()
    kp_source, kp_driving = kp_pair(1)
    out = gen(torch.rand(1, 3, 256, 256), kp_driving=kp_driving, kp_source=kp_source)
    assert out["prediction"].shape == (1, 3, 256, 256)
    assert out["mask"].shape == (1, 11, 64, 64)
    assert out["sparse_deformed"].shape == (1, 11, 3, 64, 64)
    assert out["occlusion_map"].shape == (1, 1, 64, 64)
    assert out["deformed"].shape == (1, 3, 256, 256)


@pytest.mark.slow
@torch.no_grad()
def test_discriminator_full_size():
    disc = MultiScaleDiscriminator().eval()
    assert n_params(disc) == 2_758_849
    out = disc({"prediction_1": torch.rand(1, 3, 256, 256)})
    assert out["prediction_map_1"].shape == (1, 1, 26, 26)
    assert [f.shape[-1] for f in out["feature_maps_1"]] == [126, 61, 29, 26]


@pytest.mark.slow
@torch.no_grad()
def test_audio_to_facial_dynamics_full_size():
    net = AudioToFacialDynamics().eval()
    # EAMM AT_net: 38,757,243 parameters, 3,466,904 of them in the dead StyleGAN2 generator.
    assert n_params(net) == 38_757_243 - 3_466_904 == 35_290_339
    sub_counts = {
        "down_blocks": 1_575_936,
        "pose_encoder": 33_920,
        "audio_eocder": 2_141_120,
        "audio_eocder_fc": 25_692_416,
        "lstm": 2_365_440,
        "decon": 3_481_507,
    }
    assert {name: n_params(getattr(net, name)) for name in sub_counts} == sub_counts
    out = net(torch.rand(1, 3, 256, 256), torch.randn(1, 3, 28, 12), torch.randn(1, 3, 6))
    assert out.shape == (1, 3, 35, 64, 64)
    kp = AudioKeypointHead()(out)
    assert kp["heatmap"].shape == (1, 3, 10, 58, 58)


@pytest.mark.slow
@torch.no_grad()
def test_emotion_displacement_full_size():
    net = EmotionDisplacement().eval()
    # EAMM Emotion_k has 27,888,092 parameters (223 state entries). Left out as dead: fc
    # (512*8+8 = 4,104), fc_n (60*128+128 + 128*512+512 = 73,856), final_4 (Conv1d 4->4 k3 twice:
    # 2*52 = 104), final_10 (Conv1d 4->8 k3 + 8->10 k3: 104+250 = 354), total 78,418 (14 entries).
    # The live sum 27,809,674 = hourglass 14,129,568 + ResNet trunk 11,187,264 + classify 4,104
    # + fc_p 1,816,064 + fc_all 672,576 + final 98 (also checked against a transcription of
    # Emotion_k with the same weights).
    dead = 4_104 + 73_856 + 104 + 354
    assert n_params(net) == 27_888_092 - dead == 27_809_674
    assert len(net.state_dict()) == 223 - 14
    out = net(torch.rand(1, 3, 256, 256), torch.rand(1, 10, 2) * 2 - 1, torch.randn(1, 10, 2, 2))
    assert out["value"].shape == (1, 4, 2)
    assert out["jacobian"].shape == (1, 4, 2, 2)
    assert out["logits"].shape == (1, 8)
    assert out["feature"].shape == (1, 512)


def test_source_skip_blends_the_warped_source_into_the_prediction():
    """``source_skip`` (ours): the last convolution draws a fourth channel, the blend of the
    full-resolution warped source; at blend 1 an unmoved face comes out exactly, sharp."""
    sizes = {
        "block_expansion": 8,
        "max_features": 64,
        "num_down_blocks": 1,
        "num_bottleneck_blocks": 1,
        "dense_motion_params": {**TINY_HOURGLASS, "scale_factor": 0.5},
        "align_corners": True,
    }
    plain = OcclusionAwareGenerator(**sizes)
    skip = OcclusionAwareGenerator(**sizes, source_skip=True)
    assert plain.final.out_channels == 3 and skip.final.out_channels == 4
    kp_source, kp_driving = kp_pair(2)
    source = torch.rand(2, 3, 64, 64)
    out = skip(source, kp_driving=kp_driving, kp_source=kp_source)
    assert out["prediction"].shape == (2, 3, 64, 64) and out["blend"].shape == (2, 1, 64, 64)
    assert out["prediction"].min() >= 0 and out["prediction"].max() <= 1
    out["prediction"].mean().backward()
    assert skip.final.weight.grad[3].abs().sum() > 0  # the blend channel learns
    with torch.no_grad():
        skip.final.weight[3] = 0
        skip.final.bias[3] = 30.0  # blend 1: the warped source alone
        still = skip(source, kp_driving=kp_source, kp_source=kp_source)
    assert torch.allclose(still["prediction"], source, atol=1e-5)
    with pytest.raises(ValueError, match="dense_motion_params"):
        OcclusionAwareGenerator(**{**sizes, "dense_motion_params": None}, source_skip=True)


def test_the_stand_in_vgg_draws_from_its_own_seed():
    """The random stand-in VGG19 took the global stream after the networks built before it: an
    edit to the audio network's sizes changed FOMM's perceptual loss (first weight sum 0.616 ->
    -2.335) though FOMM resumed. Now the same weights whatever came before, and the global
    stream is left where it was."""
    from eamm.models.perceptual import Vgg19Features

    torch.manual_seed(0)
    first = Vgg19Features.from_weights(None)
    after = torch.rand(1)
    torch.manual_seed(0)
    torch.rand(1000)  # other networks' draws
    second = Vgg19Features.from_weights(None)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    Vgg19Features.from_weights(None)
    assert torch.equal(torch.rand(1), after)
