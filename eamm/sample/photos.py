"""The two public-domain photographs the sample's faces come from, with their landmarks.

astronaut: scikit-image's data.astronaut() (Eileen Collins, NASA), 512x512.
hopper: matplotlib's mpl-data/sample_data/grace_hopper.jpg (US Navy), 512x600.
The landmark tables hold the mediapipe face-mesh vertices (index: (x, y) in photo pixels) that
steer the sample's expression and mouth warps. They were measured once with
``FaceModels().mesh`` on the unedited photos and are stored so the sample does not depend on
the mesh model's version; ``measure_landmarks`` re-measures them (the tests compare).
"""

from __future__ import annotations

from functools import cache

import numpy as np

ASTRONAUT_LANDMARKS = {
    0: (223.6, 140.5),
    2: (224.0, 133.9),
    4: (224.4, 127.0),
    10: (227.5, 72.4),
    13: (223.5, 142.7),
    14: (223.1, 149.6),
    17: (222.8, 154.9),
    33: (194.6, 100.9),
    37: (217.1, 139.3),
    48: (210.7, 126.7),
    50: (190.3, 120.0),
    61: (201.8, 139.5),
    63: (191.7, 88.1),
    66: (206.4, 87.6),
    70: (187.6, 91.5),
    78: (204.7, 140.2),
    80: (210.1, 140.1),
    81: (213.7, 141.0),
    82: (218.1, 142.0),
    84: (216.5, 153.7),
    87: (217.7, 148.8),
    88: (209.6, 145.2),
    95: (207.3, 143.4),
    105: (198.0, 86.7),
    107: (216.2, 89.4),
    133: (213.8, 103.6),
    136: (189.6, 155.1),
    145: (204.4, 104.2),
    149: (200.6, 166.2),
    151: (227.0, 81.6),
    152: (221.3, 175.5),
    159: (202.8, 97.8),
    172: (185.2, 148.4),
    178: (213.2, 147.2),
    191: (207.1, 139.5),
    263: (256.7, 104.1),
    267: (230.2, 140.0),
    278: (237.9, 128.2),
    280: (258.8, 123.7),
    291: (245.9, 142.2),
    293: (261.1, 91.9),
    296: (246.7, 89.8),
    300: (264.7, 95.7),
    308: (243.0, 142.6),
    310: (237.3, 141.8),
    311: (233.6, 142.3),
    312: (229.1, 142.7),
    314: (229.3, 154.5),
    317: (228.6, 149.5),
    318: (237.2, 147.0),
    324: (239.8, 145.5),
    334: (255.0, 89.8),
    336: (236.9, 90.5),
    362: (237.4, 104.8),
    365: (255.3, 158.7),
    374: (246.7, 106.2),
    378: (243.2, 168.6),
    386: (248.9, 100.2),
    397: (260.3, 152.6),
    402: (233.3, 148.5),
    415: (240.6, 141.7),
}

HOPPER_LANDMARKS = {
    0: (268.5, 270.0),
    2: (268.1, 252.3),
    4: (267.6, 237.0),
    10: (262.0, 131.9),
    13: (268.7, 276.9),
    14: (268.6, 277.2),
    17: (269.1, 288.5),
    33: (201.6, 194.2),
    37: (257.4, 269.0),
    48: (239.5, 242.2),
    50: (201.3, 235.1),
    61: (232.3, 277.3),
    63: (192.0, 169.1),
    66: (221.4, 163.4),
    70: (184.9, 176.8),
    78: (236.7, 276.2),
    80: (246.8, 276.0),
    81: (253.0, 276.3),
    82: (260.5, 276.8),
    84: (258.6, 288.3),
    87: (259.9, 277.3),
    88: (245.6, 277.0),
    95: (241.5, 276.9),
    105: (204.2, 164.4),
    107: (242.0, 164.0),
    133: (240.0, 193.2),
    136: (202.5, 301.1),
    145: (221.2, 197.3),
    149: (225.7, 320.8),
    151: (262.7, 149.0),
    152: (271.6, 333.1),
    159: (217.4, 187.5),
    172: (193.1, 288.6),
    178: (252.1, 277.1),
    191: (241.5, 275.7),
    263: (326.4, 187.3),
    267: (279.5, 267.9),
    278: (295.5, 239.0),
    280: (331.5, 227.7),
    291: (304.7, 273.9),
    293: (333.3, 162.4),
    296: (304.4, 159.4),
    300: (341.0, 169.0),
    308: (300.0, 273.2),
    310: (290.2, 274.0),
    311: (284.1, 274.9),
    312: (276.8, 276.0),
    314: (279.6, 287.2),
    317: (277.3, 276.5),
    318: (291.4, 274.7),
    324: (295.4, 274.3),
    334: (321.1, 158.9),
    336: (284.2, 161.9),
    362: (288.4, 190.5),
    365: (336.1, 293.6),
    374: (307.5, 192.5),
    378: (315.6, 315.5),
    386: (310.2, 182.4),
    397: (343.7, 280.1),
    402: (285.0, 275.4),
    415: (295.3, 273.2),
}

LANDMARKS = {"astronaut": ASTRONAUT_LANDMARKS, "hopper": HOPPER_LANDMARKS}


@cache
def photo(name: str) -> np.ndarray:
    """The photo as an RGB uint8 array (read-only; copy before editing)."""
    if name == "astronaut":
        from skimage import data

        img = np.ascontiguousarray(data.astronaut())
    elif name == "hopper":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            img = np.ascontiguousarray(np.asarray(im.convert("RGB")))
    else:
        raise ValueError(f"unknown photo {name!r}; known: {sorted(LANDMARKS)}")
    img.setflags(write=False)
    return img


def measure_landmarks(name: str) -> dict[int, tuple[float, float]]:
    """The stored vertices re-measured with mediapipe's still-image face mesh."""
    from eamm.face.landmarks import FaceModels

    models = FaceModels()
    try:
        mesh = models.mesh(np.array(photo(name)))
    finally:
        models.close()
    if mesh is None:
        raise RuntimeError(f"no face found in photo {name!r}")
    return {i: (float(mesh[i, 0]), float(mesh[i, 1])) for i in LANDMARKS[name]}
