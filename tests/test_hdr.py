"""HDR (PQ, HLG) frames come out as the SDR picture they carry, against ffmpeg's zscale."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from eamm.sample.photos import photo
from eamm.video.decode import decode_frames
from eamm.video.hdr import HLG, KNEE, PQ, SDR_GAMMA, hdr_to_sdr, hdr_transfer
from eamm.video.warp import resize_rgb, warp_to_crop

IDENTITY = np.array([[1.0, 0, 0], [0, 1.0, 0]])


def has_zscale() -> bool:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-filters"], capture_output=True, text=True)
    return " zscale " in out.stdout


needs_zscale = pytest.mark.skipif(not has_zscale(), reason="ffmpeg without zscale (zimg)")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)))


def sdr_picture() -> np.ndarray:
    """The astronaut at 256 (a face, a flag, highlights), RGB uint8."""
    return cv2.resize(photo("astronaut"), (256, 256), interpolation=cv2.INTER_AREA)


def hdr_clip(tmp: Path, picture: np.ndarray, transfer: str, pix_fmt: str) -> Path:
    """``picture`` (SDR, BT.709) as a 10-bit HDR clip tagged as a phone tags one: SDR white at
    HDR reference white (203 cd/m2), put into ``transfer`` and BT.2020 by zscale."""
    png, out = tmp / "sdr.png", tmp / f"hdr_{transfer}_{pix_fmt}.mkv"
    cv2.imwrite(str(png), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    chain = (
        f"zscale=tin=bt709:pin=bt709:min=gbr:rin=full:t={transfer}:p=bt2020:m=bt2020nc:r=tv"
        f":npl=203,format={pix_fmt}"
    )
    tags = f"-color_primaries bt2020 -color_trc {transfer} -colorspace bt2020nc -color_range tv"
    command = f"ffmpeg -v error -y -loop 1 -i {png} -frames:v 3 -vf {chain} -c:v ffv1 {tags}"
    subprocess.run([*command.split(), str(out)], check=True)
    return out


def below_knee(picture: np.ndarray) -> np.ndarray:
    """Pixels whose brightest channel's light is under the knee: unchanged by the roll-off."""
    return picture.max(-1) < 255 * KNEE ** (1 / SDR_GAMMA) - 2


@needs_zscale
@pytest.mark.parametrize(
    "transfer, floor, cast",
    # zimg applies HLG's OOTF to each channel, BT.2100 (and so eamm) to the luminance: an HLG
    # picture's saturation differs a little (per channel this code gave 40 dB)
    [("smpte2084", 38.0, 1.0), ("arib-std-b67", 31.0, 4.5)],
)
@pytest.mark.parametrize("pix_fmt", ["yuv444p10le", "yuv444p"])
def test_an_hdr_clip_decodes_to_the_sdr_picture_it_carries(
    tmp_path, transfer, floor, cast, pix_fmt
):
    picture = sdr_picture()
    frame = next(decode_frames(hdr_clip(tmp_path, picture, transfer, pix_fmt)))
    assert hdr_transfer(frame) == {"smpte2084": PQ, "arib-std-b67": HLG}[transfer]
    crop = warp_to_crop(frame, IDENTITY, 256)
    as_sdr = frame.to_ndarray(format="rgb24")  # what a decoder unaware of HDR gives
    low = below_knee(picture)
    assert psnr(as_sdr[low], picture[low]) < 24  # flat and grey: what this fixes
    assert psnr(crop[low], picture[low]) > floor
    assert np.abs(crop[low].mean(0) - picture[low].mean(0)).max() < cast  # no colour cast
    assert psnr(crop, picture) > floor - 8  # highlights rolled off, not clipped flat
    small = resize_rgb(frame, 128)  # the face detector's copy too
    assert psnr(small, cv2.resize(picture, (128, 128), interpolation=cv2.INTER_AREA)) > 25


def test_reference_white_and_grey_land_where_sdr_puts_them():
    """PQ's code for 203 cd/m2 (0.58) is SDR white less the roll-off; 18 % grey of it is SDR's
    18 % grey (level 124 on a BT.1886 display); HLG's 75 % signal is reference white."""
    pq_white, pq_grey = 0.5806, 0.4105  # ST 2084 at 203 and 36.5 cd/m2
    rgb = np.array([[[pq_white] * 3, [pq_grey] * 3]]) * 255
    out = hdr_to_sdr(np.rint(rgb).astype(np.uint8), PQ).astype(int)
    assert 240 <= out[0, 0, 0] < 255 and (out[0, 0] == out[0, 0, 0]).all()
    assert abs(out[0, 1, 0] - 124) <= 3  # 8-bit PQ steps
    hlg = hdr_to_sdr(np.full((1, 1, 3), round(0.75 * 255), np.uint8), HLG).astype(int)
    assert abs(hlg[0, 0, 0] - out[0, 0, 0]) <= 3


def test_sdr_frames_are_untouched():
    picture = sdr_picture()
    frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
    assert hdr_transfer(frame) is None
    assert np.array_equal(warp_to_crop(frame, IDENTITY, 256), picture)
