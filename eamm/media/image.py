"""Still images (the portrait photo): decoded once, the same way where checked and where used."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from eamm.errors import MediaError

# OpenCV decodes these; HEIC/HEIF (a phone's default photo format) goes through pillow-heif.
IMAGE_FORMATS = "JPEG, PNG, WebP, AVIF, BMP, TIFF, HEIC/HEIF"
# ISO-BMFF brands of HEVC-coded HEIF images (ISO/IEC 23008-12); AVIF's OpenCV reads itself.
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, EXIF orientation applied; grey, 16-bit, CMYK and
    alpha images become 8-bit RGB. The bytes are read here: ``cv2.imread`` takes the path as
    UTF-8 and crashed (SIGSEGV) on a name that is not."""
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError) as err:
        raise MediaError(path, f"unreadable image ({err.strerror or err})") from None
    if not data.size:
        raise MediaError(path, "unreadable image (empty file)")
    if data[4:8].tobytes() == b"ftyp" and data[8:12].tobytes() in HEIF_BRANDS:
        return _read_heif(path, data)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(path, f"unreadable image (not {IMAGE_FORMATS}, or damaged)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_heif(path: str | Path, data: np.ndarray) -> np.ndarray:
    """HEIC through libheif (pillow-heif): the container's rotation and mirror (irot, imir; a
    phone writes its orientation there) applied; the EXIF orientation, which HEIF leaves
    informative, is not applied again (pillow-heif resets it), so a photo is never turned
    twice. HDR scaled to 8 bits, alpha and grey to RGB."""
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, ValueError, SyntaxError, RuntimeError) as err:
        raise MediaError(path, f"unreadable HEIF image ({err})") from None
