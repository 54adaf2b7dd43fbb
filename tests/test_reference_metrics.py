"""Our metric code against the reference implementations behind published numbers.

CPBD: ours equals ``cpbd.compute`` of PyPI ``cpbd-py312`` 1.0.3 (the ``cpbd`` 1.0.7 code,
importable on current Python) to 1e-6 on real frames. SyncNet v2: ours and
``syncnet-python`` 0.2.3 (joonson's syncnet_python) with the same random weights give the same
embeddings and the same offset search, to 1e-5. FID: our Inception and pytorch-fid 0.3.0's with
the same random weights give the same pool3 features, and the same Fréchet distance. The
reference packages are test-only: each test skips, with the install command, where its package
is absent.
"""

from __future__ import annotations

import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from eamm.errors import EammError
from eamm.judges import SyncNetV2
from eamm.judges.scoring import load_judges
from eamm.judges.sync import load_syncnet, offset_distances, offset_search, syncnet_score
from eamm.metrics.fid import (
    FEATURES,
    FID_WEIGHTS_NAME,
    FidInceptionV3,
    frechet_distance,
    load_fid_inception,
)
from eamm.metrics.sharpness import cpbd, cpbd_clip, to_gray
from tests.conftest import calibrate_batch_norm, randomise_batch_norm

ROOT = Path(__file__).resolve().parents[1]
VSHIFT = 15  # syncnet_python's and EAT's offset range


def _reference_cpbd():
    return pytest.importorskip(
        "cpbd", reason="reference CPBD not installed: pip install -c constraints.txt cpbd-py312"
    )


def _reference_syncnet():
    """syncnet_python's model and scoring modules. Its wheel requires torchvision, whose PyPI
    build does not import with the CPU torch, so it is installed without dependencies."""
    reason = (
        "reference SyncNet not installed: pip install -c constraints.txt --no-deps "
        "syncnet-python scenedetect"
    )
    model = pytest.importorskip("syncnet_python.SyncNetModel", reason=reason, exc_type=ImportError)
    instance = pytest.importorskip("syncnet_python.SyncNetInstance", reason=reason)
    return model, instance


# --- CPBD ----------------------------------------------------------------------------------------


def _fixture_frames(fixtures_dir) -> dict[str, np.ndarray]:
    """Real uint8 RGB frames: EAMM's aligned LRW clip and a few frames of a MEAD emotion clip."""
    frames = {}
    folder = fixtures_dir / "lrw_reference" / "ABOUT_00001" / "frames"
    for path in sorted(folder.glob("*.png"), key=lambda p: int(p.stem)):
        frames[f"ABOUT_00001/{path.stem}"] = np.asarray(Image.open(path).convert("RGB"))
    capture = cv2.VideoCapture(str(fixtures_dir / "aligned_videos" / "happy.mp4"))
    index = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index % 25 == 0:
            frames[f"happy/{index}"] = np.ascontiguousarray(bgr[..., ::-1])
        index += 1
    capture.release()
    return frames


@pytest.mark.fixtures
def test_cpbd_equals_the_reference_on_real_frames(fixtures_dir):
    reference = _reference_cpbd()
    frames = _fixture_frames(fixtures_dir)
    assert len(frames) >= 29 + 5
    ours, theirs = {}, {}
    for name, rgb in frames.items():
        # The reference's command line reads a frame as PIL's "L" image.
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        theirs[name] = float(reference.compute(grey))
        ours[name] = cpbd(grey)
    for name in frames:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-6), name
    assert min(theirs.values()) > 0.1 and max(theirs.values()) < 0.9  # measured edges, not 0 or 1
    clip = np.stack([frames[f"ABOUT_00001/{i}"] for i in range(3)])
    expected = np.mean([theirs[f"ABOUT_00001/{i}"] for i in range(3)])
    assert cpbd_clip(clip) == pytest.approx(expected, abs=1e-6)


def test_cpbd_equals_the_reference_on_synthetic_images():
    """Sizes that are not multiples of the 64-pixel block, blur, noise, low contrast, monotonic
    runs longer than the reference's 100-step cap, images with nothing measured."""
    reference = _reference_cpbd()
    rng = np.random.default_rng(0)
    images = {"tiny": rng.integers(0, 256, (5, 7))}
    for i, (h, w) in enumerate([(64, 198), (229, 236), (93, 209)]):
        smooth = cv2.GaussianBlur(rng.normal(size=(h, w)), (0, 0), 0.8 + i)
        images[f"smooth{i}"] = 30 + 200 * (smooth - smooth.min()) / np.ptp(smooth)
        images[f"noise{i}"] = rng.integers(0, 40 + 100 * i, (h, w))
    row = np.where(np.arange(256) <= 150, np.arange(256), np.minimum(np.arange(256) + 20, 255))
    long_runs = np.repeat(row[None].astype(float), 128, axis=0)
    long_runs[:, 152] -= 10
    long_runs[120:] = 7
    long_runs[120:, 50:60] = 200
    images["long_runs"] = long_runs
    images["long_runs_mirrored"] = long_runs[:, ::-1]
    for name, image in images.items():
        grey = np.clip(np.round(image), 0, 255).astype(np.uint8)
        assert cpbd(grey) == pytest.approx(float(reference.compute(grey)), abs=1e-6), name


def _falling_edge(drops: list[int], top: int = 200, start: int = 30) -> np.ndarray:
    """64x64 image whose rows fall from ``top`` by ``drops`` from column ``start`` on."""
    row = np.full(64, float(top))
    for i, drop in enumerate(drops):
        row[start + i :] -= drop
    return np.repeat(row[None], 64, axis=0)


def test_cpbd_known_answers_of_the_reference_algorithm():
    """Answers worked out by hand from the reference's rules (module docstring of
    eamm.metrics.sharpness); no reference package needed."""
    # One Sobel edge pixel per row; width 3 steps = w_JNB at contrast 150: P = 63.2 % -> sharp.
    assert cpbd(_falling_edge([70, 60, 20])) == 1.0
    # Width 4 > w_JNB = 3 at contrast 150 -> blurred; the same width at contrast 40
    # (w_JNB = 5) -> sharp.
    assert cpbd(_falling_edge([19, 56, 56, 19])) == 0.0
    assert cpbd(_falling_edge([5, 15, 15, 5], top=140)) == 1.0
    # Width 6 > 5 at contrast 40 -> blurred.
    assert cpbd(_falling_edge([2, 5, 13, 13, 5, 2], top=140)) == 0.0
    # The reference's choices: rising-only images have every gradient angle 0 and measure
    # nothing; horizontal edges give no d/dx Sobel edge; a one-pixel step has two equal Sobel
    # responses, so thinning keeps neither.
    assert cpbd(_falling_edge([70, 60, 20])[:, ::-1]) == 0.0
    assert cpbd(_falling_edge([70, 60, 20]).T) == 0.0
    assert cpbd(_falling_edge([150])) == 0.0
    # Blocks are whole 64x64 blocks: a smaller image has none.
    assert cpbd(_falling_edge([70, 60, 20])[:63]) == 0.0


def test_grey_conversion_is_pils():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.array_equal(to_gray(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


# --- SyncNet v2 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def syncnet_pair():
    """The reference network with seeded random weights and batch-norm statistics, and ours
    loaded from the same weights saved as a ``syncnet_v2.model``-style state dict."""
    model, _ = _reference_syncnet()
    torch.manual_seed(0)
    reference = model.S(num_layers_in_fc_layers=1024)
    randomise_batch_norm(reference, seed=0)
    return reference.eval(), reference.state_dict()


def test_syncnet_v2_embeddings_equal_the_reference(syncnet_pair, tmp_path):
    reference, state = syncnet_pair
    path = tmp_path / "syncnet_v2.model"
    torch.save({f"__S__.{k}": v for k, v in state.items()}, path)  # the released file's keys
    ours = load_syncnet(path, torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    lips = torch.rand(3, 3, 5, 224, 224, generator=generator) * 255
    mfcc = torch.randn(3, 1, 13, 20, generator=generator) * 10
    with torch.no_grad():
        ours_video, ref_video = ours.embed_video(lips), reference.forward_lip(lips)
        ours_audio, ref_audio = ours.embed_audio(mfcc), reference.forward_aud(mfcc)
    assert ref_video.shape == (3, 1024) and ref_audio.shape == (3, 1024)
    torch.testing.assert_close(ours_video, ref_video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_audio, ref_audio, rtol=1e-5, atol=1e-5)


def test_offset_search_equals_the_reference():
    _, instance = _reference_syncnet()
    generator = torch.Generator().manual_seed(2)
    for windows in (40, 12):  # more and fewer windows than offsets
        audio = torch.randn(windows, 1024, generator=generator)
        video = torch.roll(audio, 3, dims=0) + 0.5 * torch.randn(windows, 1024, generator=generator)
        dists = instance.calc_pdist(video, audio, vshift=VSHIFT)
        mdist = torch.mean(torch.stack(dists, 1), 1)
        minval, minidx = torch.min(mdist, 0)
        ours = offset_distances(video, audio, VSHIFT)
        torch.testing.assert_close(ours, mdist, rtol=1e-5, atol=1e-5)
        score = offset_search(video, audio, VSHIFT)
        assert score.offset == VSHIFT - int(minidx)
        assert score.min_dist == pytest.approx(float(minval), rel=1e-5, abs=1e-5)
        conf = float(torch.median(mdist) - minval)
        assert score.confidence == pytest.approx(conf, rel=1e-5, abs=1e-5)
        if windows == 40:
            assert score.offset == 3  # the planted one: video window i is audio window i - 3


def test_syncnet_score_equals_the_reference_pipeline(syncnet_pair, tmp_path):
    """Same frames (224x224 JPEGs, as syncnet_python reads them) and the same 16 kHz WAV through
    ``SyncNetInstance.evaluate`` and through our ``syncnet_score``."""
    reference, state = syncnet_pair
    _, instance = _reference_syncnet()
    ours = SyncNetV2()
    ours.load_state_dict(state)
    ours.eval()
    rng = np.random.default_rng(3)
    frames = 16  # 11 windows: the reference's 9-window median filter fits
    for i in range(frames):
        bgr = cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), (0, 0), 2)
        cv2.imwrite(str(tmp_path / f"{i:06d}.jpg"), bgr)
    samples = (rng.normal(0, 3000, frames * 640)).clip(-32768, 32767).astype(np.int16)
    wavfile.write(tmp_path / "audio.wav", 16000, samples)
    opt = types.SimpleNamespace(tmp_dir=str(tmp_path), batch_size=20, vshift=VSHIFT)
    offset, conf, min_dist = instance.SyncNetInstance(reference, device="cpu").evaluate(opt)

    rgb = np.stack([cv2.imread(str(tmp_path / f"{i:06d}.jpg"))[..., ::-1] for i in range(frames)])
    score = syncnet_score(ours, rgb, samples / 32768.0, VSHIFT)
    assert score.offset == offset
    assert score.min_dist == pytest.approx(min_dist, rel=1e-5, abs=1e-5)
    assert score.confidence == pytest.approx(conf, rel=1e-5, abs=1e-5)


# --- SyncNet weights setting ---------------------------------------------------------------------


def test_missing_syncnet_weights_stop_with_one_line_naming_setting_and_file(tmp_path):
    missing = tmp_path / "nowhere" / "syncnet_v2.model"
    with pytest.raises(EammError) as err:
        load_judges(tmp_path, torch.device("cpu"), VSHIFT, str(missing))
    message = str(err.value)
    assert "\n" not in message
    assert str(missing) in message and "evaluate.syncnet_weights" in message
    not_weights = tmp_path / "syncnet_v2.model"
    not_weights.write_text("not a torch file\n")
    with pytest.raises(
        EammError, match=r"syncnet_v2\.model: cannot load SyncNet v2 weights"
    ) as err:
        load_judges(tmp_path, torch.device("cpu"), VSHIFT, str(not_weights))
    assert "\n" not in str(err.value) and "evaluate.syncnet_weights" in str(err.value)


# --- FID -----------------------------------------------------------------------------------------

FID_REFERENCE = ROOT / ".venv" / "fid-reference"


def _reference_fid():
    """pytorch-fid 0.3.0's ``inception`` and ``fid_score`` modules. They build the network
    through torchvision, whose PyPI build does not import with the CPU torch, so
    ``scripts/bootstrap.sh`` installs both into ``.venv/fid-reference`` (outside site-packages)
    and torchvision's pure-Python model code is imported here without its C extension."""
    if not (FID_REFERENCE / "pytorch_fid").is_dir():
        pytest.skip(
            "reference FID not installed: pip install -c constraints.txt --no-deps "
            "--target .venv/fid-reference torchvision pytorch-fid"
        )
    import importlib
    import sys

    package = FID_REFERENCE / "torchvision"
    saved = {
        k: v for k, v in sys.modules.items() if k.split(".")[0] in ("torchvision", "pytorch_fid")
    }

    def stub(name: str, path) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
        return module

    sys.path.insert(0, str(FID_REFERENCE))
    try:
        torchvision = stub("torchvision", package)
        torchvision.__version__ = "0.28.0"
        transforms = stub("torchvision.transforms", package / "transforms")
        functional = importlib.import_module("torchvision.transforms.functional")
        transforms.functional, transforms.InterpolationMode = (
            functional,
            functional.InterpolationMode,
        )
        models = stub("torchvision.models", package / "models")
        models.inception = importlib.import_module("torchvision.models.inception")
        models.inception_v3 = models.inception.inception_v3
        torchvision.models = models
        inception = importlib.import_module("pytorch_fid.inception")
        fid_score = importlib.import_module("pytorch_fid.fid_score")
    finally:
        sys.path.remove(str(FID_REFERENCE))
        for name in [k for k in sys.modules if k.split(".")[0] in ("torchvision", "pytorch_fid")]:
            del sys.modules[name]
        sys.modules.update(saved)
    return inception, fid_score


def _reference_fid_network(inception) -> torch.nn.Module:
    """pytorch-fid's ``fid_inception_v3`` without its download: torchvision's Inception3 with
    the FID blocks, seeded random weights, batch-norm statistics measured on random images."""
    net = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = inception.FIDInceptionE_1(1280)
    net.Mixed_7c = inception.FIDInceptionE_2(2048)
    randomise_batch_norm(net, seed=1)
    calibrate_batch_norm(
        net, torch.rand(8, 3, 299, 299, generator=torch.Generator().manual_seed(3))
    )
    return net


def test_fid_inception_is_torchvisions_inception3_in_size():
    """torchvision's Inception3 without the auxiliary head, 1008 classes (pytorch-fid's file):
    23,834,568 parameters (torchvision's published 27,161,264 less the auxiliary head's
    3,326,696) + 8 more classes; pool3 is 2048 wide for any input size."""
    net = FidInceptionV3().eval()
    assert sum(p.numel() for p in net.parameters()) == 23_834_568 + 8 * 2049
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 64)).shape == (2, FEATURES)


def test_fid_inception_equals_pytorch_fid(tmp_path):
    """The same random weights in pytorch-fid's ``InceptionV3([3])`` (resize to 299, scale to
    [-1, 1], pool3) and in ours, loaded from a file with the released file's keys."""
    inception, _ = _reference_fid()
    torch.manual_seed(0)
    network = _reference_fid_network(inception)
    original = inception.fid_inception_v3
    inception.fid_inception_v3 = lambda: network
    try:
        reference = inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    finally:
        inception.fid_inception_v3 = original
    path = tmp_path / FID_WEIGHTS_NAME
    torch.save(network.state_dict(), path)
    ours = load_fid_inception(path, torch.device("cpu"))
    images = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(images)[0].flatten(1)
        got = ours(images)
    assert expected.std(0).mean() > 1e-2  # features that depend on the image
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_frechet_distance_equals_pytorch_fids_and_the_eigenvalue_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 32))
    b = rng.normal(size=(350, 32)) @ rng.normal(size=(32, 32)) * 0.3 + 0.5
    ours = frechet_distance(a, b)
    # Tr sqrt(Sa Sb) = sum of the square roots of Sa Sb's eigenvalues (real, >= 0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    roots = np.sqrt(np.clip(np.linalg.eigvals(cov_a @ cov_b).real, 0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    closed = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * roots
    assert ours == pytest.approx(closed, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    if (FID_REFERENCE / "pytorch_fid").is_dir():
        _, fid_score = _reference_fid()
        reference = fid_score.calculate_frechet_distance(a.mean(0), cov_a, b.mean(0), cov_b)
        assert ours == pytest.approx(reference, rel=1e-9)


def test_frechet_distance_with_fewer_frames_than_features_equals_the_schur_root():
    """The evaluation's test sets are often fewer frames than Inception's 2048 features: both
    covariances singular, where the original FID code's Schur square root still applies."""
    from scipy import linalg

    rng = np.random.default_rng(1)
    a = rng.normal(size=(24, 96))
    b = rng.normal(size=(30, 96)) * 0.8 + 0.1
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    diff = a.mean(0) - b.mean(0)
    schur = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root).real
    assert frechet_distance(a, b) == pytest.approx(schur, rel=1e-6)


def test_fid_weights_that_are_missing_or_other_stop_with_one_line(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(EammError) as err:
        load_fid_inception(missing, torch.device("cpu"))
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"evaluate.fid_weights: {missing} does not exist")
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(EammError) as err:
        load_fid_inception(other, torch.device("cpu"))
    assert "\n" not in str(err.value) and "other.pth: not the FID Inception (" in str(err.value)
