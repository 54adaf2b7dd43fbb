"""HDR video (PQ or HLG transfer) to SDR BT.709 colours, as an SDR display should show it.

A phone's HDR clip decoded as if it were SDR looks flat and grey (its face crops, the training
data made from them, the image the face detector sees); players tone-map it. Each small RGB
image (a crop, the detector's copy) is mapped as ITU-R BT.2408 describes: to display light
(HLG through BT.2100's OOTF for a ``PEAK`` display), HDR reference white (203 cd/m2, HLG's 75 %
signal) to SDR white, BT.2020 primaries to BT.709's, highlights above ``KNEE`` of SDR white
rolled off up to ``PEAK`` (ffmpeg's ``tonemap=mobius`` curve on the brightest channel, so hue
is kept), then the signal a BT.1886 display shows as that light. A picture below the knee
comes back as it was before it was put in HDR (tested against ffmpeg's zscale). SDR frames are
never touched.
"""

from __future__ import annotations

import functools

import av
import numpy as np

# H.273 transfer characteristics
PQ, HLG = 16, 18
REFERENCE_WHITE = 203.0  # cd/m2: BT.2408's HDR reference (graphics) white
# cd/m2: the nominal display of BT.2100's HLG OOTF, and the peak highlights roll off to (a
# phone's and most mastering displays'; brighter PQ light clips, and the stream's own light
# level metadata is not read: PyAV's side data would pin each frame's buffers)
PEAK = 1000.0
KNEE = 0.75  # of SDR white: faces and most of a scene sit below it, unchanged
SDR_GAMMA = 2.4  # BT.1886's display (zero black level): what zscale assumes of SDR, too

_BT2020_TO_BT709 = np.array(  # linear RGB, BT.2087
    [
        [1.6605, -0.5876, -0.0728],
        [-0.1246, 1.1329, -0.0083],
        [-0.0182, -0.1006, 1.1187],
    ],
    dtype=np.float32,
)
_BT2020_LUMA = np.array([0.2627, 0.6780, 0.0593], dtype=np.float32)


def hdr_transfer(frame: av.VideoFrame) -> int | None:
    """``PQ`` or ``HLG`` when ``frame`` carries that transfer tag, else None (SDR)."""
    trc = int(getattr(frame, "color_trc", 2) or 2)
    return trc if trc in (PQ, HLG) else None


def _pq_eotf(code: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084: signal in [0, 1] -> display light in cd/m2."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.power(np.clip(code, 0, 1), 1 / m2)
    return 10000.0 * np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1)


def _hlg_inverse_oetf(code: np.ndarray) -> np.ndarray:
    """ARIB STD-B67 / BT.2100: signal in [0, 1] -> scene light in [0, 1]."""
    a, b, c = 0.17883277, 1 - 4 * 0.17883277, 0.5 - 0.17883277 * np.log(4 * 0.17883277)
    code = np.clip(code, 0, 1)
    low = code * code / 3
    high = (np.exp((code - c) / a) + b) / 12
    return np.where(code <= 0.5, low, high)


@functools.cache
def _linear_lut(transfer: int) -> np.ndarray:
    """Signal level (0..255) -> linear light: display cd/m2 (PQ), scene light (HLG)."""
    code = np.arange(256, dtype=np.float64) / 255
    curve = _pq_eotf(code) if transfer == PQ else _hlg_inverse_oetf(code)
    return curve.astype(np.float32)


def _mobius(x: np.ndarray, knee: float, peak: float) -> np.ndarray:
    """ffmpeg's ``tonemap=mobius``: identity up to ``knee``, then a Moebius curve with slope 1
    there that takes ``peak`` to 1."""
    a = -knee * knee * (peak - 1) / (knee * knee - 2 * knee + peak)
    b = (knee * knee - 2 * knee * peak + peak) / (peak - 1)
    rolled = (b * b + 2 * b * knee + knee * knee) / (b - a) * (x + a) / (x + b)
    return np.where(x <= knee, x, rolled)


def hdr_to_sdr(rgb: np.ndarray, transfer: int) -> np.ndarray:
    """(H, W, 3) uint8 R'G'B' of an HDR frame (BT.2020 primaries, ``transfer`` PQ or HLG) ->
    uint8 BT.709 SDR."""
    light = _linear_lut(transfer)[rgb]
    if transfer == HLG:  # BT.2100's OOTF for the nominal display: scene -> display light
        luma = light @ _BT2020_LUMA
        gain = PEAK * np.power(np.maximum(luma, 1e-9), 0.2)
        light *= gain[..., None]
    light = np.maximum(light @ _BT2020_TO_BT709.T, 0) / REFERENCE_WHITE
    brightest = np.maximum(light.max(axis=-1, keepdims=True), 1e-6)
    light *= _mobius(brightest, KNEE, PEAK / REFERENCE_WHITE) / brightest
    signal = np.power(np.clip(light, 0, 1), 1 / SDR_GAMMA) * 255
    return np.rint(signal).astype(np.uint8)
