"""Audio preprocessing: decoding to 16 kHz mono and EAMM's MFCC windows (library, no Prefect)."""

from eamm.audio.load import NoAudioError, fit_length, load_audio_16k_mono, write_wav_s16
from eamm.audio.mfcc import (
    EAMM_PAD,
    AudioTooShortError,
    end_pad_for_frames,
    mfcc_frames,
    mfcc_window_range,
    mfcc_windows,
)

__all__ = [
    "EAMM_PAD",
    "AudioTooShortError",
    "NoAudioError",
    "end_pad_for_frames",
    "fit_length",
    "load_audio_16k_mono",
    "mfcc_frames",
    "mfcc_window_range",
    "mfcc_windows",
    "write_wav_s16",
]
