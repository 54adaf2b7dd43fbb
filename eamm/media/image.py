"""Still images (the portrait photo): decoded once, the same way where checked and where used."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from eamm.errors import MediaError

# What OpenCV's decoders read; a phone's HEIC photo is not among them.
IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, TIFF"


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
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise MediaError(path, f"unreadable image (not {IMAGE_FORMATS}, or damaged)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
