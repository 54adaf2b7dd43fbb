"""Evaluation metrics on cases with known answers: PSNR, SSIM, CPBD and landmark distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio

from eamm.metrics import FACE, MOUTH, clip_landmarks, cpbd, cpbd_clip, lmd, psnr, ssim
from eamm.metrics.image import PSNR_CAP_DB


def _smooth_clip(frames: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 (T, size, size, 3) smooth random texture in [40, 215] (room for noise, no clipping)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(frames, size, size, 3))
    tex = filters.gaussian(noise, sigma=(0, 2, 2, 0))
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return np.round(40 + 175 * tex).astype(np.uint8)


def _add_noise(clip: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = clip.astype(np.float64) + rng.normal(0.0, sigma, clip.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# --- PSNR / SSIM -------------------------------------------------------------------------------


def test_identical_clips():
    clip = _smooth_clip()
    # the per-frame cap, not inf (which the mean over clips left out as a missing face)
    assert psnr(clip, clip.copy()) == pytest.approx(PSNR_CAP_DB)
    assert ssim(clip, clip.copy()) == pytest.approx(1.0, abs=1e-9)
    assert psnr(clip[0], clip[0]) == pytest.approx(PSNR_CAP_DB)  # a single (H, W, 3) frame


def test_noise_psnr_matches_analytic_value():
    clip = _smooth_clip()
    sigma = 5.0
    noisy = _add_noise(clip, sigma)
    value = psnr(noisy, clip)
    assert math.isfinite(value)
    # Analytic: MSE = sigma^2 (plus 1/12 from rounding to integers, ~0.01 dB).
    assert value == pytest.approx(10 * math.log10(255.0**2 / sigma**2), abs=0.5)
    # Exactly the mean of per-frame 10*log10(255^2/MSE), as scikit-image computes it per frame.
    diff = noisy.astype(np.float64) - clip
    per_frame = [10 * math.log10(255.0**2 / np.mean(d**2)) for d in diff]
    assert value == pytest.approx(np.mean(per_frame), abs=1e-9)
    ref = [peak_signal_noise_ratio(t, p, data_range=255) for p, t in zip(noisy, clip, strict=True)]
    assert value == pytest.approx(np.mean(ref), abs=1e-9)
    assert ssim(noisy, clip) < 1.0


def test_psnr_caps_identical_frames_at_100_db():
    clip = _smooth_clip(frames=2)
    noisy = _add_noise(clip, 5.0)
    mixed = np.stack([clip[0], noisy[1]])  # frame 0 identical, frame 1 noisy
    assert abs(PSNR_CAP_DB - 100.0) < 1e-9
    expected = (100.0 + psnr(noisy[1], clip[1])) / 2
    assert psnr(mixed, clip) == pytest.approx(expected, abs=1e-9)
    # The cap is relative to data_range: the same holds on the [0, 1] scale.
    assert psnr(mixed / 255.0, clip / 255.0, data_range=1.0) == pytest.approx(expected, abs=1e-9)


def test_more_degradation_ranks_lower():
    clip = _smooth_clip()
    light, heavy = _add_noise(clip, 3.0), _add_noise(clip, 20.0)
    assert psnr(light, clip) > psnr(heavy, clip)
    assert ssim(light, clip) > ssim(heavy, clip)
    shift1, shift3 = np.roll(clip, 1, axis=2), np.roll(clip, 3, axis=2)
    assert psnr(shift1, clip) > psnr(shift3, clip)
    assert ssim(shift1, clip) > ssim(shift3, clip)
    assert ssim(shift1, clip) < 1.0


def test_data_range_must_match_the_pixel_scale():
    clip = _smooth_clip()
    noisy = _add_noise(clip, 5.0)
    as_uint8 = psnr(noisy, clip, data_range=255.0)
    as_float = psnr(noisy / 255.0, clip / 255.0, data_range=1.0)
    assert as_float == pytest.approx(as_uint8, abs=1e-9)
    assert ssim(noisy / 255.0, clip / 255.0, data_range=1.0) == pytest.approx(
        ssim(noisy, clip, data_range=255.0), abs=1e-9
    )
    # The wrong data_range for float frames gives a very different (wrong) PSNR.
    assert psnr(noisy / 255.0, clip / 255.0) == pytest.approx(as_uint8 + 20 * math.log10(255.0))


def test_shape_mismatch_names_both_shapes():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = np.zeros((2, 16, 17, 3), np.uint8)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(2, 16, 16, 3\).*\(2, 16, 17, 3\)"):
            fn(a, b)
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=0)


# --- CPBD --------------------------------------------------------------------------------------


def test_cpbd_flat_image_is_zero():
    assert cpbd(np.full((64, 64), 128, np.uint8)) == 0.0
    assert cpbd_clip(np.full((2, 64, 64, 3), 90, np.uint8)) == 0.0


def test_cpbd_ranks_blur():
    camera = data.camera().astype(np.float64)
    scores = {
        s: cpbd(camera if s == 0 else filters.gaussian(camera, sigma=s, preserve_range=True))
        for s in (0, 1, 1.5, 2, 4)
    }
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores[0] > scores[1] > scores[1.5] > scores[2] >= scores[4]
    # A sigma-2 blur widens every edge beyond the just-noticeable width (10-90 % width ~5 px
    # > w_JNB of 3 or 5 px), so the JNB model calls (almost) all of them blurred.
    assert scores[2] < 0.03

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    checker = np.where((yy // 8 + xx // 8) % 2, 200.0, 50.0) + rng.normal(0, 3, (128, 128))
    blurred = {s: filters.gaussian(checker, sigma=s, preserve_range=True) for s in (2, 4)}
    sharp = cpbd(np.clip(checker, 0, 255))
    assert sharp > 0.5
    assert sharp > cpbd(blurred[2]) >= cpbd(blurred[4])


def test_cpbd_range_scale_and_clip():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 96)).astype(np.uint8)
    value = cpbd(noise)
    assert 0.0 <= value <= 1.0
    assert cpbd(noise / 255.0, data_range=1.0) == value
    frames = np.repeat(data.camera()[::4, ::4, None], 3, axis=2)  # (128, 128, 3) grey RGB
    clip = np.stack([frames, np.full_like(frames, 7)])
    assert cpbd_clip(clip) == pytest.approx((cpbd(frames[..., 0]) + 0.0) / 2)
    with pytest.raises(ValueError):
        cpbd(clip)
    with pytest.raises(ValueError, match=r"^expected uint8 frames \(0\.\.255\), got float32$"):
        cpbd_clip(clip.astype(np.float32) / 255)  # scored 1.0 whatever the picture


# --- Landmark distance ---------------------------------------------------------------------------


def _landmarks(frames: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(20, 100, (frames, 68, 2))


def test_lmd_known_distances():
    lm = _landmarks()
    assert lmd(lm, lm.copy(), FACE) == 0.0
    assert lmd(lm, lm.copy(), MOUTH) == 0.0
    shifted = lm + np.array([3.0, 4.0])
    assert lmd(shifted, lm, FACE) == pytest.approx(5.0, abs=1e-12)
    assert lmd(shifted, lm, MOUTH) == pytest.approx(5.0, abs=1e-12)
    # Only the mouth moves: M-LMD sees the whole shift, F-LMD 20/68 of it.
    mouth_only = lm.copy()
    mouth_only[:, MOUTH] += np.array([3.0, 4.0])
    assert lmd(mouth_only, lm, MOUTH) == pytest.approx(5.0)
    assert lmd(mouth_only, lm, FACE) == pytest.approx(5.0 * 20 / 68)


def test_lmd_ignores_frames_without_a_face():
    lm = _landmarks()
    pred = lm + np.array([3.0, 4.0])
    pred[1] = np.nan  # no face in the generated frame 1
    target = lm.copy()
    target[2] = np.nan  # no face in the ground-truth frame 2
    pred[0] += 100.0  # frames 0 and 3 differ, so the mean shows which frames were used
    expected = np.mean([np.linalg.norm(pred[i] - target[i], axis=-1).mean() for i in (0, 3)])
    assert lmd(pred, target, FACE) == pytest.approx(expected)
    pred[:] = np.nan
    assert math.isnan(lmd(pred, target, FACE))
    with pytest.raises(ValueError, match=r"\(4, 68, 2\).*\(3, 68, 2\)"):
        lmd(lm, lm[:3], FACE)


class _FakeModels:
    """Stands in for FaceModels: a mesh whose vertex i sits at (i, 2i), or no face."""

    def __init__(self, faces: list[bool]) -> None:
        self.faces = faces
        self.calls: list[str] = []

    def reset_tracking(self) -> None:
        self.calls.append("reset")

    def track(self, rgb: np.ndarray) -> np.ndarray | None:
        self.calls.append("track")
        if not self.faces[len(self.calls) - 2]:
            return None
        i = np.arange(468, dtype=np.float32)
        return np.stack([i, 2 * i, np.zeros_like(i)], axis=1)


def test_clip_landmarks_maps_mesh_and_marks_missing_faces():
    from eamm.face.ibug68 import MESH_TO_IBUG68

    models = _FakeModels([True, False, True])
    out = clip_landmarks(np.zeros((3, 8, 8, 3), np.uint8), models)
    assert models.calls == ["reset", "track", "track", "track"]
    assert out.shape == (3, 68, 2)
    np.testing.assert_array_equal(out[0, :, 0], MESH_TO_IBUG68)
    np.testing.assert_array_equal(out[2, :, 1], 2 * MESH_TO_IBUG68)
    assert np.isnan(out[1]).all()


@pytest.mark.fixtures
def test_clip_landmarks_on_real_video(fixtures_dir):
    import av

    from eamm.face.landmarks import FaceModels

    frames = []
    with av.open(str(fixtures_dir / "aligned_videos" / "happy.mp4")) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 5:
                break
    clip = np.stack(frames)
    models = FaceModels()
    try:
        lm = clip_landmarks(clip, models)
    finally:
        models.close()
    assert lm.shape == (5, 68, 2)
    assert np.isfinite(lm).all()
    eyes_y = lm[:, 36:48, 1].mean(axis=1)
    mouth_y = lm[:, MOUTH, 1].mean(axis=1)
    assert (mouth_y > eyes_y + 10).all()  # image y grows downwards
    assert lmd(lm, lm, MOUTH) == 0.0
