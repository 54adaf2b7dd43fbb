"""EAMM's audio features: python_speech_features-exact MFCCs and 28-row windows per video frame.

EAMM computes ``python_speech_features.mfcc(signal, 16000, winstep=0.01)`` on 16 kHz mono audio
padded with 1920 zeros at both ends, then cuts windows of 28 MFCC rows with stride 4 (one window
per 40 ms video frame at 25 fps). This module reproduces that numerically (vectorised, no Python
loop over frames) without depending on python_speech_features at run time.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dct

from eamm.config import AUDIO_RATE, VIDEO_FPS
from eamm.errors import EammError

EAMM_PAD = 1920  # zero samples added at both ends (0.12 s = 3 video frames of context)
WINDOW_ROWS = 28  # MFCC rows per window (280 ms)
WINDOW_STRIDE = 4  # MFCC rows between windows (40 ms = one 25 fps video frame)
NUM_CEP = 13

# python_speech_features 0.6 defaults (the ones EAMM uses).
_WINLEN_S = 0.025
_WINSTEP_S = 0.01
_NFILT = 26
_NFFT = 512
_PREEMPH = 0.97
_CEPLIFTER = 22
_EPS = np.finfo(float).eps


class AudioTooShortError(EammError, ValueError):
    """The audio is too short to give even one 28-row MFCC window."""

    def __init__(self, num_samples: int, min_samples: int) -> None:
        super().__init__(
            f"audio too short for an MFCC window: {num_samples} samples, "
            f"need at least {min_samples} at 16 kHz"
        )
        self.num_samples = num_samples
        self.min_samples = min_samples


def _round_half_up(x: float) -> int:
    # python_speech_features rounds frame length/step half-up (decimal), not banker's rounding.
    return math.floor(x + 0.5)


def _frame_geometry(sample_rate: int) -> tuple[int, int]:
    """(frame length, frame step) in samples, rounded as ``framesig`` rounds them."""
    return _round_half_up(_WINLEN_S * sample_rate), _round_half_up(_WINSTEP_S * sample_rate)


def _num_frames(num_samples: int, frame_len: int, frame_step: int) -> int:
    if num_samples <= frame_len:
        return 1
    return 1 + math.ceil((num_samples - frame_len) / frame_step)


@lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int) -> np.ndarray:
    """Triangular mel filters (nfilt, nfft//2+1), identical to ``get_filterbanks``.

    The band edges are floored to FFT bins with ``floor((nfft+1) * hz / sr)``, which is what
    makes the result differ from other mel implementations; the triangles are built with
    broadcasting instead of the library's double loop.
    """
    low_mel = 0.0  # hz2mel(lowfreq=0)
    high_mel = 2595.0 * np.log10(1.0 + (sample_rate / 2) / 700.0)
    mel_points = np.linspace(low_mel, high_mel, _NFILT + 2)
    hz_points = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)
    bins = np.floor((_NFFT + 1) * hz_points / sample_rate)
    left, centre, right = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    i = np.arange(_NFFT // 2 + 1, dtype=float)[None, :]
    rising = (i >= left) & (i < centre)
    falling = (i >= centre) & (i < right)
    with np.errstate(divide="ignore", invalid="ignore"):
        fb = np.where(rising, (i - left) / (centre - left), 0.0)
        fb = np.where(falling, (right - i) / (right - centre), fb)
    fb.setflags(write=False)
    return fb


def mfcc_frames(signal: np.ndarray, sample_rate: int = AUDIO_RATE) -> np.ndarray:
    """MFCCs of a mono signal, (num_frames, 13) float64, equal to python_speech_features 0.6
    ``mfcc(signal, sample_rate, winstep=0.01)`` with every other argument at its default.

    That is: pre-emphasis 0.97; rectangular 25 ms frames every 10 ms, the last one zero-padded
    (one frame when the signal is no longer than a frame); 512-point power spectrum / 512;
    26 mel filters from 0 Hz to sr/2; zero energies set to float eps before the log; DCT-II
    (ortho), 13 cepstra; lifter 22; column 0 replaced by the log total frame energy.
    """
    sig = np.asarray(signal, dtype=np.float64)
    if sig.ndim != 1:
        raise ValueError(f"mfcc_frames expects a 1-D mono signal, got shape {sig.shape}")
    frame_len, frame_step = _frame_geometry(sample_rate)

    emphasized = np.empty_like(sig)
    if sig.size:
        emphasized[0] = sig[0]
        emphasized[1:] = sig[1:] - _PREEMPH * sig[:-1]

    n_frames = _num_frames(sig.size, frame_len, frame_step)
    padded = np.zeros((n_frames - 1) * frame_step + frame_len)
    padded[: sig.size] = emphasized
    frames = sliding_window_view(padded, frame_len)[::frame_step]

    pspec = np.square(np.abs(np.fft.rfft(frames, _NFFT))) / _NFFT
    energy = pspec.sum(axis=1)
    energy = np.where(energy == 0, _EPS, energy)
    feat = pspec @ _mel_filterbank(sample_rate).T
    feat = np.where(feat == 0, _EPS, feat)

    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :NUM_CEP]
    n = np.arange(NUM_CEP)
    cep *= 1.0 + (_CEPLIFTER / 2.0) * np.sin(np.pi * n / _CEPLIFTER)
    cep[:, 0] = np.log(energy)
    return cep


def mfcc_windows(audio_16k_mono: np.ndarray, extra_end_pad: int = 0) -> np.ndarray:
    """EAMM's per-frame audio input: float32 (K, 28, 13), window k = MFCC rows [4k, 4k+28).

    The audio gets ``EAMM_PAD`` zeros at the start and ``EAMM_PAD + extra_end_pad`` at the end
    (``extra_end_pad`` lets callers get one window per video frame, see ``end_pad_for_frames``),
    so window k covers [40k - 120, 40k + 175) ms of the original audio. K = (N - 28) // 4 + 1
    for N MFCC rows; raises ``AudioTooShortError`` when that is < 1 (<= 720 samples).
    """
    audio = np.asarray(audio_16k_mono, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"mfcc_windows expects 1-D mono audio, got shape {audio.shape}")
    if extra_end_pad < 0:
        raise ValueError(f"extra_end_pad must be >= 0, got {extra_end_pad}")
    padded = np.concatenate([np.zeros(EAMM_PAD), audio, np.zeros(EAMM_PAD + extra_end_pad)])
    feats = mfcc_frames(padded, AUDIO_RATE)
    if feats.shape[0] < WINDOW_ROWS:
        raise AudioTooShortError(audio.size + extra_end_pad, _min_samples_for_windows(1))
    windows = sliding_window_view(feats, WINDOW_ROWS, axis=0)[::WINDOW_STRIDE]
    return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)


def mfcc_window_range(
    audio_16k_mono: np.ndarray, extra_end_pad: int, start: int, stop: int
) -> np.ndarray:
    """``mfcc_windows(audio, extra_end_pad)[start:stop]`` from only the audio those windows
    cover, so a long speech is transformed a window of frames at a time in bounded memory.

    The piece starts one MFCC hop before window ``start`` (row 4 start - 1), whose row is
    dropped: it gives the pre-emphasis of the first kept row its previous sample. Rows are
    computed frame by frame, so the result equals the whole-signal one (to BLAS rounding).
    """
    if not 0 <= start < stop:
        raise ValueError(f"need 0 <= start < stop, got {start}, {stop}")
    audio = np.asarray(audio_16k_mono)
    frame_len, frame_step = _frame_geometry(AUDIO_RATE)
    lead = 1 if start else 0
    begin = (WINDOW_STRIDE * start - lead) * frame_step  # in the padded signal
    total = audio.size + 2 * EAMM_PAD + extra_end_pad
    end = min(total, (WINDOW_STRIDE * (stop - 1) + WINDOW_ROWS - 1) * frame_step + frame_len)
    piece = np.zeros(end - begin)
    lo, hi = max(begin, EAMM_PAD), min(end, EAMM_PAD + audio.size)
    if lo < hi:
        piece[lo - begin : hi - begin] = audio[lo - EAMM_PAD : hi - EAMM_PAD]
    feats = mfcc_frames(piece, AUDIO_RATE)[lead:]
    if feats.shape[0] < WINDOW_ROWS + WINDOW_STRIDE * (stop - start - 1):
        raise AudioTooShortError(audio.size + extra_end_pad, _min_samples_for_windows(stop))
    windows = sliding_window_view(feats, WINDOW_ROWS, axis=0)[::WINDOW_STRIDE][: stop - start]
    return np.ascontiguousarray(windows.transpose(0, 2, 1), dtype=np.float32)


def _min_samples_for_windows(num_windows: int, sample_rate: int = AUDIO_RATE) -> int:
    """Smallest total audio length (before EAMM padding) that gives ``num_windows`` windows."""
    frame_len, frame_step = _frame_geometry(sample_rate)
    # Need N >= 4(T-1) + 28 = 4T + 24 rows, N = 1 + ceil((S - frame_len) / step) with
    # S = L + 2*pad, i.e. S - frame_len > step * (4T + 22).
    rows_needed = WINDOW_STRIDE * (num_windows - 1) + WINDOW_ROWS
    return frame_step * (rows_needed - 2) + 1 + frame_len - 2 * EAMM_PAD


def end_pad_for_frames(
    num_samples: int, num_frames: int, fps: int = VIDEO_FPS, sample_rate: int = AUDIO_RATE
) -> int:
    """Fewest extra end zeros so that ``mfcc_windows`` gives at least ``num_frames`` windows.

    Why: EAMM's recipe gives about 25 x duration - 1 windows, so audio of exactly
    ``num_frames * 640`` samples yields ``num_frames - 1``; a per-frame dataset needs one
    window per frame. Arithmetic at 16 kHz (frame 400, hop 160, pad 1920 each side), for
    L audio samples plus ``extra`` zeros:

        N = 1 + ceil((L + extra + 3840 - 400) / 160)    MFCC rows
        K = floor((N - 28) / 4) + 1 = floor(N / 4) - 6   windows

    K >= T  <=>  N >= 4T + 24  <=>  ceil((L + extra + 3440) / 160) >= 4T + 23
            <=>  L + extra + 3440 > 160 (4T + 22)  <=>  L + extra >= 640 T + 81.

    So ``extra = max(0, 640 T + 81 - L)``: 81 for L = 640 T. When the audio already gives
    more than T windows this returns 0 and callers slice ``[:num_frames]``. The window stride
    (4 hops = 40 ms) only pairs with video frames at 25 fps and ``mfcc_windows`` is 16 kHz
    only, so other rates are rejected (ValueError) rather than silently misaligned.
    """
    if sample_rate != AUDIO_RATE:
        raise ValueError(f"mfcc_windows works on 16 kHz audio, got sample_rate={sample_rate}")
    _, frame_step = _frame_geometry(sample_rate)
    if fps * WINDOW_STRIDE * frame_step != sample_rate:
        raise ValueError(
            f"EAMM windows advance {WINDOW_STRIDE} MFCC hops (40 ms); that matches {VIDEO_FPS} fps "
            f"video only, got fps={fps}: convert the video to {VIDEO_FPS} fps first"
        )
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    return max(0, _min_samples_for_windows(num_frames, sample_rate) - num_samples)
