"""The portrait photo as users bring it: a phone's HEIC, sideways with an orientation tag."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from eamm.errors import MediaError
from eamm.media.image import read_image
from eamm.sample.dataset import write_portrait

ORIENTATION = 0x0112
ROTATE_CW = 6  # EXIF: display the stored pixels turned 90 degrees clockwise


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def portrait(tmp_path_factory) -> np.ndarray:
    path = write_portrait(tmp_path_factory.mktemp("photo") / "portrait.png")
    return np.asarray(Image.open(path).convert("RGB"))


def save(image: np.ndarray, path, fmt: str, orientation: int | None = None):
    import pillow_heif

    pillow_heif.register_heif_opener()
    options = {"quality": 95}
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    Image.fromarray(image).save(path, format=fmt, **options)
    return path


def test_a_heic_photo_reads_as_its_pixels(portrait, tmp_path):
    photo = save(portrait, tmp_path / "IMG_0001.HEIC", "HEIF")
    assert photo.read_bytes()[4:12] == b"ftypheic"
    image = read_image(photo)
    assert image.shape == portrait.shape and image.dtype == np.uint8
    assert psnr(image, portrait) > 35


@pytest.mark.parametrize(("fmt", "name"), [("HEIF", "side.heic"), ("JPEG", "side.jpg")])
def test_a_sideways_photo_with_an_orientation_tag_reads_upright_once(portrait, tmp_path, fmt, name):
    """Stored turned a quarter counter-clockwise, tagged to be shown turned clockwise (a phone
    held sideways): read upright, in HEIC as in JPEG, never turned twice."""
    stored = np.ascontiguousarray(np.rot90(portrait))  # counter-clockwise
    image = read_image(save(stored, tmp_path / name, fmt, ROTATE_CW))
    assert image.shape == portrait.shape
    assert psnr(image, portrait) > 30


def test_a_damaged_heic_photo_is_one_line(portrait, tmp_path):
    photo = save(portrait, tmp_path / "cut.heic", "HEIF")
    photo.write_bytes(photo.read_bytes()[:200])
    with pytest.raises(MediaError, match=r"cut\.heic: unreadable HEIF image \(.+\)$"):
        read_image(photo)


def test_an_unknown_format_names_what_is_read(tmp_path):
    photo = tmp_path / "photo.xyz"
    photo.write_bytes(b"\x00" * 64)
    with pytest.raises(MediaError, match=r"not JPEG, PNG, WebP, AVIF, BMP, TIFF, HEIC/HEIF"):
        read_image(photo)
