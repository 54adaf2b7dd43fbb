"""Voiced, syllable-like synthetic speech with the mouth shape that drives the face.

A glottal pulse train (with pitch declination and vibrato) through three formant resonators per
vowel, a short noise burst as the consonant onset (the lips are closed before it), and a
raised-cosine loudness per syllable. Each vowel has its own mouth shape: how far the jaw opens
(``a`` widest, ``i`` least) and how wide the lips are (``i``/``e`` spread, ``o``/``u``
rounded); the mouth follows the loudness envelope, so it is closed between syllables.
Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter


@dataclass(frozen=True)
class Vowel:
    """Formants (F1, F2, F3) in Hz, jaw opening (0..1) and lip width (-1 rounded .. +1 spread)."""

    formants: tuple[float, float, float]
    opening: float
    width: float


VOWELS: dict[str, Vowel] = {
    "a": Vowel((730.0, 1090.0, 2440.0), 1.0, 0.1),
    "e": Vowel((530.0, 1840.0, 2480.0), 0.55, 0.6),
    "i": Vowel((270.0, 2290.0, 3010.0), 0.3, 1.0),
    "o": Vowel((570.0, 840.0, 2410.0), 0.75, -0.8),
    "u": Vowel((300.0, 870.0, 2240.0), 0.45, -1.0),
}


@dataclass(frozen=True)
class Speech:
    """Mono samples in [-1, 1]; at every sample the mouth opening (0..1), the lip width
    (-1..1, 0 when closed) and the vowel being spoken ('' between syllables)."""

    samples: np.ndarray
    sample_rate: int
    mouth: np.ndarray
    width: np.ndarray
    vowels: tuple[tuple[str, int, int], ...] = ()  # (vowel, first sample, end sample)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    def _at_frames(self, values: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
        edges = np.round(np.arange(num_frames + 1) / fps * self.sample_rate).astype(int)
        edges = np.clip(edges, 0, len(values))
        csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
        widths = np.maximum(edges[1:] - edges[:-1], 1)
        return ((csum[edges[1:]] - csum[edges[:-1]]) / widths).astype(np.float32)

    def mouth_at_frames(self, num_frames: int, fps: float) -> np.ndarray:
        """Mean mouth opening over each video frame's time span."""
        return self._at_frames(self.mouth, num_frames, fps)

    def width_at_frames(self, num_frames: int, fps: float) -> np.ndarray:
        """Mean lip width over each video frame's time span."""
        return self._at_frames(self.width, num_frames, fps)


def _resonator(signal: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, signal)


def synth_speech(
    duration_s: float,
    sample_rate: int,
    seed: int,
    f0_hz: float = 140.0,
    vowels: str | None = None,
) -> Speech:
    """Speech-like audio of exactly ``round(duration_s * sample_rate)`` samples.

    ``vowels`` fixes the vowel sequence (cycled); by default each syllable draws one.
    """
    rng = np.random.default_rng(seed)
    n = round(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = f0_hz * (1.1 - 0.2 * t / max(duration_s, 1e-6)) * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    phase = np.cumsum(f0) / sample_rate
    glottal = (phase % 1.0) * 2 - 1
    glottal = glottal - lfilter([1.0], [1.0, -0.95], glottal) * 0.05

    samples = np.zeros(n)
    mouth = np.zeros(n)
    width = np.zeros(n)
    spoken = []
    pos = int(rng.uniform(0.12, 0.2) * sample_rate)
    names = list(VOWELS)
    while True:
        length = int(rng.uniform(0.16, 0.28) * sample_rate)
        if pos + length > n - int(0.08 * sample_rate):
            break
        drawn = names[rng.integers(len(names))]
        name = vowels[len(spoken) % len(vowels)] if vowels else drawn
        vowel = VOWELS[name]
        seg = slice(pos, pos + length)
        voiced = glottal[seg]
        for freq, bw in zip(vowel.formants, (80.0, 100.0, 140.0), strict=True):
            voiced = voiced + _resonator(glottal[seg], freq, bw, sample_rate) * 0.6
        envelope = np.sin(np.linspace(0, np.pi, length)) ** 1.5
        samples[seg] += voiced * envelope
        burst = min(int(0.03 * sample_rate), pos)
        samples[pos - burst : pos] += rng.normal(0, 0.08, burst) * np.hanning(burst)
        mouth[seg] = np.maximum(mouth[seg], envelope * vowel.opening)
        width[seg] = vowel.width * np.minimum(1.0, 2.5 * envelope)
        spoken.append((name, pos, pos + length))
        pos += length + int(rng.uniform(0.06, 0.14) * sample_rate)
    samples += rng.normal(0, 1e-3, n)
    samples = 0.7 * samples / max(np.abs(samples).max(), 1e-9)
    return Speech(
        samples.astype(np.float32),
        sample_rate,
        mouth.astype(np.float32),
        width.astype(np.float32),
        tuple(spoken),
    )
