"""Audio preprocessing: MFCCs equal to python_speech_features, EAMM windows, PyAV decoding."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from python_speech_features import mfcc as psf_mfcc

from eamm.audio import (
    EAMM_PAD,
    AudioTooShortError,
    NoAudioError,
    end_pad_for_frames,
    fit_length,
    load_audio_16k_mono,
    mfcc_frames,
    mfcc_windows,
    write_wav_s16,
)
from eamm.errors import MediaError
from tests.conftest import mounted_tmpfs

LOG_EPS = float(np.log(np.finfo(float).eps))  # c0 of an all-zero frame, -36.04


def eamm_reference_windows(audio: np.ndarray) -> np.ndarray:
    """EAMM's recipe with the real library: pad 1920 both sides, mfcc, windows 28 / stride 4."""
    sig = np.concatenate([np.zeros(1920), audio, np.zeros(1920)])
    feats = psf_mfcc(sig, 16000, winstep=0.01)
    count = (len(feats) - 28) // 4 + 1
    return np.stack([feats[4 * k : 4 * k + 28] for k in range(count)])


@pytest.mark.parametrize("length", [0, 1, 399, 400, 401, 560, 561, 4000])
def test_mfcc_frames_matches_python_speech_features(length):
    rng = np.random.default_rng(length)
    sig = rng.normal(0, 0.1, length)
    sig[: length // 3] = 0  # include zero-energy frames (log eps path)
    ours = mfcc_frames(sig)
    if length == 0:  # the library itself fails on an empty signal; we give one silent frame
        assert ours.shape == (1, 13) and ours[0, 0] == pytest.approx(LOG_EPS)
        return
    ref = psf_mfcc(sig, 16000, winstep=0.01)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_mfcc_windows_too_short_raises():
    assert mfcc_windows(np.zeros(721)).shape == (1, 28, 13)
    with pytest.raises(AudioTooShortError, match="720 samples"):
        mfcc_windows(np.zeros(720))
    # Extra end padding counts towards the length.
    assert mfcc_windows(np.zeros(700), extra_end_pad=21).shape == (1, 28, 13)


@pytest.mark.parametrize("frames", [1, 29, 93, 300])
def test_end_pad_gives_one_window_per_frame(frames):
    length = 640 * frames
    audio = np.random.default_rng(frames).normal(0, 0.05, length)
    pad = end_pad_for_frames(length, frames)
    assert pad == 81
    assert mfcc_windows(audio, extra_end_pad=pad).shape[0] == frames
    if frames == 1:  # the recipe's own count is one short: here none at all
        with pytest.raises(AudioTooShortError):
            mfcc_windows(audio, extra_end_pad=pad - 1)
    else:
        assert mfcc_windows(audio).shape[0] == frames - 1
        assert mfcc_windows(audio, extra_end_pad=pad - 1).shape[0] == frames - 1  # minimal


@pytest.mark.parametrize(("length", "frames"), [(640 * 29 + 81, 29), (640 * 30, 29), (30000, 3)])
def test_end_pad_is_zero_when_audio_is_long_enough(length, frames):
    assert end_pad_for_frames(length, frames) == 0
    assert mfcc_windows(np.zeros(length)).shape[0] >= frames


def test_end_pad_rejects_other_rates():
    with pytest.raises(ValueError, match="25 fps"):
        end_pad_for_frames(19200, 30, fps=30)
    with pytest.raises(ValueError, match="16 kHz"):
        end_pad_for_frames(19200, 30, sample_rate=48000)


@pytest.mark.fixtures
def test_mfcc_windows_match_eamm_recipe_on_real_speech(fixtures_dir):
    stereo, rate = sf.read(fixtures_dir / "audio/sample1_16k.wav")
    assert rate == 16000 and stereo.ndim == 2
    audio = stereo.mean(axis=1)  # librosa.load's mono mix-down
    ours = mfcc_windows(audio)
    ref = eamm_reference_windows(audio)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (282, 28, 13)
    assert np.abs(ours - ref).max() < 1e-3
    # The first 10 MFCC rows see only the start padding: c0 = log(eps).
    assert EAMM_PAD == 1920
    np.testing.assert_allclose(ours[0, :10, 0], LOG_EPS, rtol=1e-6)


@pytest.mark.fixtures
def test_load_mp3(fixtures_dir):
    audio = load_audio_16k_mono(fixtures_dir / "audio/sample1.mp3")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 180_960) <= 1_200
    assert np.abs(audio).max() <= 1.0
    assert mfcc_windows(audio).shape == (282, 28, 13)


@pytest.mark.fixtures
def test_load_wav_mixes_down_like_librosa(fixtures_dir):
    path = fixtures_dir / "audio/sample1_16k.wav"
    stereo, _ = sf.read(path, dtype="float32")
    audio = load_audio_16k_mono(path)
    # Average of the channels (not libswresample's 0.707 (L + R) downmix).
    np.testing.assert_allclose(audio, stereo.mean(axis=1), atol=1e-6)


@pytest.mark.fixtures
def test_load_soundtrack_of_video(fixtures_dir):
    path = fixtures_dir / "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4"
    audio = load_audio_16k_mono(path, stream_from_video=True)
    assert abs(audio.size - 18_560) <= 160  # 1.16 s = 29 frames at 25 fps
    # A plain decode keeps the AAC encoder padding past the declared duration.
    plain = load_audio_16k_mono(path)
    assert 18_560 <= plain.size <= 18_560 + 2048
    np.testing.assert_array_equal(plain[: audio.size], audio)
    windows = mfcc_windows(audio, extra_end_pad=end_pad_for_frames(audio.size, 29))
    assert windows.shape == (29, 28, 13)


def test_empty_file_is_media_error(tmp_path):
    bad = tmp_path / "empty.wav"
    bad.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.wav: unreadable media \(empty file\)"):
        load_audio_16k_mono(bad)


def test_garbage_and_missing_files_are_media_errors(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError, match=r"garbage\.mp4: unreadable media \(.+\)"):
        load_audio_16k_mono(bad)
    with pytest.raises(MediaError, match=r"missing\.wav: unreadable media \(.+\)"):
        load_audio_16k_mono(tmp_path / "missing.wav")


@pytest.mark.fixtures
def test_truncated_video_is_media_error(tmp_path, fixtures_dir):
    src = (fixtures_dir / "lrw/lipread_mp4/ABOUT/train/ABOUT_00001.mp4").read_bytes()
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(MediaError, match=r"truncated\.mp4: unreadable media"):
        load_audio_16k_mono(bad)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_media_errors(tmp_path, bad):
    samples = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.3
    samples[5000:5010] = bad
    path = tmp_path / "damaged.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match=r"damaged audio \(10 samples are NaN or infinite\)"):
        load_audio_16k_mono(path)


@pytest.mark.parametrize("channels", [1, 2, 6, 8, 16])
def test_many_channel_audio_is_averaged_without_crashing(tmp_path, channels):
    """8 channels (a 7.1 soundtrack) crashed the process with SIGSEGV inside PyAV (a planar
    frame's plane count), killing a whole preprocessing run; run in a child process so a crash
    fails this test instead of ending the session."""
    t = np.arange(16000) / 16000
    tones = [0.05 * (k + 1) * np.sin(2 * np.pi * (200 + 50 * k) * t) for k in range(channels)]
    path = tmp_path / f"{channels}ch.wav"
    sf.write(path, np.stack(tones, axis=1).astype(np.float32), 16000, subtype="FLOAT")
    code = (
        "import sys, numpy as np; from eamm.audio import load_audio_16k_mono; "
        "np.save(sys.argv[2], load_audio_16k_mono(sys.argv[1]))"
    )
    out = tmp_path / "mono.npy"
    done = subprocess.run([sys.executable, "-c", code, str(path), str(out)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    expected = np.mean(tones, axis=0)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_video_without_audio_is_no_audio_error(tmp_path):
    out = tmp_path / "silent.mp4"
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x64:d=1"]
    subprocess.run([*cmd, "-c:v", "libx264", str(out)], check=True)
    with pytest.raises(NoAudioError, match=r"silent\.mp4: no audio stream") as info:
        load_audio_16k_mono(out, stream_from_video=True)
    assert isinstance(info.value, MediaError) and info.value.reason == "no audio stream"


def test_fit_length():
    samples = np.arange(1, 6, dtype=np.float32)
    padded, diff = fit_length(samples, 8)
    assert diff == 3 and padded.tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert padded.dtype == np.float32
    trimmed, diff = fit_length(samples, 3)
    assert diff == -2 and trimmed.tolist() == [1, 2, 3]
    same, diff = fit_length(samples, 5)
    assert diff == 0 and same.tolist() == samples.tolist()


def test_write_wav_s16_round_trip(tmp_path):
    audio = (0.5 * np.sin(np.linspace(0, 200 * np.pi, 16000))).astype(np.float32)
    out = write_wav_s16(audio, tmp_path / "sub" / "clip.wav")
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.frames == 16000
    back, _ = sf.read(out, dtype="float32")
    np.testing.assert_allclose(back, audio, atol=1 / 32768 + 1e-6)
    assert [p.name for p in out.parent.iterdir()] == ["clip.wav"]  # no temp file left
    # Decoding our own WAV gives the same samples back.
    np.testing.assert_allclose(load_audio_16k_mono(out), back, atol=1e-6)


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "size=256k") as folder:
        yield folder


def test_a_full_disk_while_writing_a_wav_is_a_fault_of_the_run(small_disk):
    """libsndfile reports a full disk as "System error." with no errno, which recorded good
    clips as failed for good: the WAV's bytes are written by Python, whose error names ENOSPC."""
    from eamm.preprocess.errors import run_fault

    (small_disk / "filler").write_bytes(b"\0" * (256 * 1024 - 16 * 1024))
    with pytest.raises(MediaError, match=r"clip\.wav: cannot write WAV \(No space left") as err:
        write_wav_s16(np.zeros(16000, np.float32), small_disk / "clip.wav")
    assert run_fault(err.value) == "No space left on device"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # nothing half-written
