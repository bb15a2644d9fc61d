"""Event sources for the synthetic corpus: one vectorised numpy generator per DESED class.

Every generator maps ``(n_samples, rng)`` to a float64 waveform (n,) at 16 kHz with unit RMS, a
distinct spectro-temporal signature per class, and random parameters drawn from ``rng`` only (so a
seeded generator is deterministic). Real recordings (:class:`SourceBank`) can replace any class.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy.signal import fftconvolve

from atst_sed.audio import SAMPLE_RATE

SR = SAMPLE_RATE  # the short name the signal formulas below use
NYQUIST_GUARD = 7600.0  # Hz: harmonics above it are muted (no aliasing)

log = logging.getLogger(__name__)

Generator = Callable[[int, np.random.Generator], np.ndarray]


# --------------------------------------------------------------------------- building blocks
def _time(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return x / rms if rms > 1e-12 else x


def _fade(n: int, attack_s: float, release_s: float) -> np.ndarray:
    """Linear attack/release envelope (n,) so events start and stop without clicks."""
    env = np.ones(n)
    a, r = min(int(attack_s * SR), n // 2), min(int(release_s * SR), n // 2)
    if a > 0:
        env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r > 0:
        env[n - r :] = np.linspace(1.0, 0.0, r)
    return env


def _smooth(x: np.ndarray, seconds: float) -> np.ndarray:
    """Moving average over ``seconds`` (box filter via cumulative sums)."""
    w = max(1, int(seconds * SR))
    c = np.concatenate([[0.0], np.cumsum(x)])
    out = (c[w:] - c[:-w]) / w
    return np.concatenate([np.full(w - 1, out[0]), out])[: x.size]


def harmonic_stack(
    f0: np.ndarray, amps: Sequence[float] | np.ndarray, rng: np.random.Generator, decimation: int = 64
) -> np.ndarray:
    """Sum of harmonics k·f0(t) (f0 in Hz per sample, (n,)).

    ``amps`` is (K,) constant amplitudes or (K, ceil(n / decimation)) slowly varying ones (one
    value per ``decimation`` samples). Harmonics above :data:`NYQUIST_GUARD` are muted. Uses the
    Chebyshev recurrence sin(kθ) = 2cosθ·sin((k−1)θ) − sin((k−2)θ): multiply-adds only.
    """
    n = f0.size
    theta = 2.0 * np.pi * np.cumsum(f0) / SR + rng.uniform(0, 2 * np.pi)
    two_cos = 2.0 * np.cos(theta)
    prev, cur = np.zeros(n), np.sin(theta)
    amps = np.asarray(amps, dtype=np.float64)
    out = np.zeros(n)
    for k in range(1, amps.shape[0] + 1):
        gain = amps[k - 1] if amps.ndim == 1 else np.repeat(amps[k - 1], decimation)[:n]
        out += np.where(k * f0 < NYQUIST_GUARD, gain, 0.0) * cur
        prev, cur = cur, two_cos * cur - prev
    return out


def band_noise(n: int, rng: np.random.Generator, low: float, high: float, tilt: float = 0.0) -> np.ndarray:
    """White noise shaped in the frequency domain to [low, high] Hz with soft edges and a spectral
    tilt (``tilt`` dB/octave re 1 kHz)."""
    m = sfft.next_fast_len(n, real=True)  # arbitrary event lengths: keep the FFT fast
    spec = sfft.rfft(rng.standard_normal(m))
    freqs = np.fft.rfftfreq(m, 1.0 / SR)
    edge = 0.15  # octaves of raised-cosine edge
    lo = np.clip((np.log2(np.maximum(freqs, 1.0) / low) + edge) / (2 * edge), 0, 1)
    hi = np.clip((np.log2(high / np.maximum(freqs, 1.0)) + edge) / (2 * edge), 0, 1)
    gain = np.sin(0.5 * np.pi * lo) ** 2 * np.sin(0.5 * np.pi * hi) ** 2
    gain *= 10.0 ** (tilt * np.log2(np.maximum(freqs, 20.0) / 1000.0) / 20.0)
    return sfft.irfft(spec * gain, m)[:n]


def _place(template: np.ndarray, times: np.ndarray, amps: np.ndarray, n: int) -> np.ndarray:
    """Copies of ``template`` starting at sample ``times`` with gains ``amps`` (FFT convolution)."""
    train = np.zeros(n)
    np.add.at(train, np.clip(times, 0, n - 1), amps)
    return fftconvolve(train, template)[:n]


# --------------------------------------------------------------------------- class generators
def alarm(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pulsed (AM) tone or two-tone alternation, 0.7–2.5 kHz with two overtones."""
    t = _time(n)
    f0 = rng.uniform(700, 2500)
    rate, duty = rng.uniform(2, 8), rng.uniform(0.3, 0.7)
    phase = (t * rate + rng.uniform()) % 1.0
    if rng.uniform() < 0.5:  # beeping alarm
        freq = np.full(n, f0)
        gate = (phase < duty).astype(np.float64)
    else:  # two-tone ringing
        freq = np.where(phase < 0.5, f0, f0 * rng.uniform(1.15, 1.5))
        gate = np.ones(n)
    freq = _smooth(freq, 0.003)
    gate = _smooth(gate, 0.005)
    ring = 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(15, 30) * t)  # bell-like tremolo
    return harmonic_stack(freq, [1.0, 0.35, 0.15], rng) * gate * ring


def blender(n: int, rng: np.random.Generator) -> np.ndarray:
    """Broadband noise plus motor harmonics (80–250 Hz) whose speed ramps up."""
    t = _time(n)
    f_motor = rng.uniform(80, 250) * (1.0 + rng.uniform(0.05, 0.25) * (1 - np.exp(-t / rng.uniform(0.2, 1.0))))
    k = np.arange(1, 16)
    motor = harmonic_stack(f_motor, 1.0 / k**0.8, rng)
    noise = band_noise(n, rng, rng.uniform(150, 400), rng.uniform(4000, 7000), tilt=-2.0)
    chop = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(8, 25) * t)  # blades chopping
    return _unit_rms(motor) * 0.6 + _unit_rms(noise) * chop


def cat(n: int, rng: np.random.Generator) -> np.ndarray:
    """Meow: harmonic stack 350–800 Hz with a rise-fall glide and vibrato."""
    t = _time(n)
    dur = n / SR
    glide = 1.0 + rng.uniform(0.2, 0.6) * np.sin(np.pi * t / dur) ** rng.uniform(0.7, 2.0)
    vibrato = 1.0 + rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * rng.uniform(5, 8) * t)
    f0 = rng.uniform(350, 800) * glide * vibrato
    amps = rng.uniform(0.55, 0.8) ** np.arange(8)
    return harmonic_stack(f0, amps, rng) * _fade(n, 0.05, min(0.2, dur / 3))


def dishes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Clatter: impacts (decaying high partials + a noise click) at random times."""
    tk = np.arange(int(0.25 * SR)) / SR
    partials = rng.uniform(1500, 7000, size=3)
    decays = rng.uniform(0.015, 0.08, size=3)
    kernel = (np.sin(2 * np.pi * partials[:, None] * tk[None, :]) * np.exp(-tk[None, :] / decays[:, None])).sum(0)
    kernel[:32] += rng.standard_normal(32) * 2.0
    n_hits = max(1, rng.poisson(rng.uniform(3, 8) * n / SR))
    times = np.sort(rng.integers(0, max(1, n - len(kernel) // 4), size=n_hits))
    times[0] = 0
    amps = rng.uniform(0.3, 1.0, size=n_hits)
    return _place(kernel, times, amps, n)


def dog(n: int, rng: np.random.Generator) -> np.ndarray:
    """Barks: 80–200 ms harmonic bursts (250–600 Hz, falling pitch) with a fast envelope."""
    bark_n = min(n, int(rng.uniform(0.08, 0.2) * SR))
    tb = np.arange(bark_n) / SR
    f0 = rng.uniform(250, 600) * (1.0 - 0.3 * tb / tb[-1] if bark_n > 1 else 1.0)
    body = harmonic_stack(np.broadcast_to(f0, (bark_n,)).astype(np.float64), 0.75 ** np.arange(10), rng)
    body += 0.3 * band_noise(bark_n, rng, 500, 4000) * np.sqrt(np.mean(body**2)) / 0.3
    env = (1 - np.exp(-tb / 0.004)) * np.exp(-tb / rng.uniform(0.03, 0.07))
    template = body * env
    spacing = int(rng.uniform(0.2, 0.45) * SR)  # barks come in regular bursts
    n_barks = max(1, (n - bark_n) // spacing + 1)
    times = np.arange(n_barks) * spacing
    times[1:] += rng.integers(-400, 400, size=n_barks - 1)
    times = np.clip(times, 0, n - bark_n)
    return _place(template, times, rng.uniform(0.6, 1.0, size=n_barks), n)


def electric_shaver(n: int, rng: np.random.Generator) -> np.ndarray:
    """Buzz: bright sawtooth-like harmonic series at a high f0 (150–400 Hz), slight AM."""
    t = _time(n)
    f0 = rng.uniform(150, 400) * (1.0 + 0.005 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    k = np.arange(1, 30)
    buzz = harmonic_stack(f0, 1.0 / k**0.6, rng)
    am = 1.0 + 0.25 * np.sin(2 * np.pi * rng.uniform(8, 20) * t)
    return buzz * am * _fade(n, 0.03, 0.05)


def frying(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sizzle: dense random crackles (heavy-tailed impulses) high-passed to 2–7 kHz, plus hiss."""
    rate = rng.uniform(300, 1500)
    crackle = (rng.uniform(size=n) < rate / SR) * rng.pareto(2.5, size=n)
    m = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(crackle, m)
    spec *= np.clip((np.fft.rfftfreq(m, 1.0 / SR) - 1500) / 1000, 0, 1)
    crackle = sfft.irfft(spec, m)[:n]
    hiss = band_noise(n, rng, rng.uniform(2500, 3500), 7500)
    return _unit_rms(crackle) + rng.uniform(0.2, 0.5) * _unit_rms(hiss)


def running_water(n: int, rng: np.random.Generator) -> np.ndarray:
    """Band noise (0.4–4 kHz) with slow random modulation and bubbling chirps."""
    t = _time(n)
    low = rng.uniform(300, 800)
    noise = band_noise(n, rng, low, low * rng.uniform(4, 8), tilt=-1.0)
    mod = 1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 6)) * np.sin(
        2 * np.pi * rng.uniform(1.5, 3.0) * t
    )
    tc = np.arange(int(0.02 * SR)) / SR
    chirp = np.sin(2 * np.pi * (600 * tc + 0.5 * 40000 * tc**2)) * np.hanning(tc.size)
    n_bubbles = rng.poisson(rng.uniform(5, 20) * n / SR)
    bubbles = _place(chirp, rng.integers(0, n, size=n_bubbles), rng.uniform(0.2, 1.0, size=n_bubbles), n)
    return _unit_rms(noise) * mod + 0.5 * _unit_rms(bubbles) if n_bubbles else noise * mod


def babble(n: int, rng: np.random.Generator) -> np.ndarray:
    """Formant-like synthetic speech: glottal harmonics shaped by formants that move per syllable,
    with a syllabic (≈4 Hz) envelope and pauses."""
    t = _time(n)
    f0 = rng.uniform(90, 240) * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0, 6)))
    syll_n = int(rng.uniform(0.15, 0.3) * SR)
    n_syll = n // syll_n + 2
    f1 = np.repeat(rng.uniform(300, 850, size=n_syll), syll_n)[:n]
    f2 = np.repeat(rng.uniform(900, 2500, size=n_syll), syll_n)[:n]
    f1, f2 = _smooth(f1, 0.03), _smooth(f2, 0.03)
    dec = 64
    k = np.arange(1, 31)[:, None]
    hk = k * f0[None, ::dec]
    gain = (
        np.exp(-0.5 * ((hk - f1[None, ::dec]) / 120.0) ** 2)
        + 0.7 * np.exp(-0.5 * ((hk - f2[None, ::dec]) / 180.0) ** 2)
        + 0.05 / k
    )
    voiced = harmonic_stack(f0, gain, rng, decimation=dec)
    voicing = np.repeat(rng.uniform(size=n_syll) < 0.85, syll_n)[:n].astype(np.float64)
    env = _smooth(voicing, 0.04) * (0.6 + 0.4 * np.sin(np.pi * (np.arange(n) % syll_n) / syll_n))
    return voiced * env * _fade(n, 0.02, 0.05)


def vacuum_cleaner(n: int, rng: np.random.Generator) -> np.ndarray:
    """Low-passed noise (cut-off 0.8–2.5 kHz), mains/motor hum and a faint high whine."""
    t = _time(n)
    noise = band_noise(n, rng, 40, rng.uniform(800, 2500), tilt=-3.0)
    hum = harmonic_stack(np.full(n, rng.uniform(60, 180)), [1.0, 0.6, 0.4, 0.3, 0.2, 0.1], rng)
    whine = np.sin(2 * np.pi * rng.uniform(1000, 3000) * t)
    return _unit_rms(noise) + 0.4 * _unit_rms(hum) + 0.08 * whine


GENERATORS: dict[str, Generator] = {
    "Alarm_bell_ringing": alarm,
    "Blender": blender,
    "Cat": cat,
    "Dishes": dishes,
    "Dog": dog,
    "Electric_shaver_toothbrush": electric_shaver,
    "Frying": frying,
    "Running_water": running_water,
    "Speech": babble,
    "Vacuum_cleaner": vacuum_cleaner,
}

#: Event duration range (seconds) per class, DESED-like: short impulsive, long stationary.
DURATIONS: dict[str, tuple[float, float]] = {
    "Alarm_bell_ringing": (0.5, 5.0),
    "Blender": (1.5, 8.0),
    "Cat": (0.4, 2.5),
    "Dishes": (0.3, 2.0),
    "Dog": (0.3, 2.0),
    "Electric_shaver_toothbrush": (1.5, 8.0),
    "Frying": (2.0, 10.0),
    "Running_water": (1.0, 10.0),
    "Speech": (0.5, 5.0),
    "Vacuum_cleaner": (2.0, 10.0),
}


def background(n: int, rng: np.random.Generator) -> np.ndarray:
    """Room tone: pink-ish noise with a random tilt and, sometimes, a faint low hum (unit RMS)."""
    noise = band_noise(n, rng, 30, 7800, tilt=rng.uniform(-4.0, -1.5))
    if rng.uniform() < 0.3:
        noise = _unit_rms(noise) + 0.3 * _unit_rms(harmonic_stack(np.full(n, rng.choice([50.0, 60.0])), [1, 0.5], rng))
    return _unit_rms(noise)


# --------------------------------------------------------------------------- real recordings
def active_segments(x: np.ndarray, floor_db: float = 17.0, max_gap_s: float = 0.4, min_len_s: float = 0.3) -> list[tuple[int, int]]:
    """Sample ranges [start, end) where ``x`` is within ``floor_db`` of its loudest 40 ms frame,
    gaps up to ``max_gap_s`` bridged. Used to cut labelled events out of real recordings."""
    hop = SR // 25
    n_fr = len(x) // hop
    if n_fr == 0:
        return []
    db = 10 * np.log10(np.mean(x[: n_fr * hop].reshape(n_fr, hop) ** 2, axis=1) + 1e-12)
    active = db > db.max() - floor_db
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > max_gap_s * 25)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    keep = (ends - starts) >= min_len_s * 25
    return [(int(s) * hop, int(e) * hop) for s, e in zip(starts[keep], ends[keep])]


@dataclass
class SourceBank:
    """Real recordings per class: lists of (name, mono 16 kHz waveform) already trimmed to activity."""

    clips: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)

    def has(self, label: str) -> bool:
        return bool(self.clips.get(label))

    def draw(self, label: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A segment of at most ``n`` samples of a random recording of ``label`` (unit RMS)."""
        name, x = self.clips[label][int(rng.integers(len(self.clips[label])))]
        if len(x) > n:
            start = int(rng.integers(0, len(x) - n + 1))
            x = x[start : start + n]
        return _unit_rms(x.astype(np.float64)) * _fade(len(x), 0.01, 0.02), name


def render_event(label: str, n: int, rng: np.random.Generator, bank: SourceBank | None = None, real_probability: float = 1.0) -> np.ndarray:
    """Waveform of one event of ``label`` lasting (at most) ``n`` samples, unit RMS.

    A real recording from ``bank`` is used with probability ``real_probability`` when it has the class
    (it may be shorter than ``n``); otherwise the class's synthetic generator.
    """
    if bank is not None and bank.has(label) and rng.uniform() < real_probability:
        return bank.draw(label, n, rng)[0]
    return _unit_rms(GENERATORS[label](n, rng))


def load_bank(files: Mapping[str, Sequence[str]], trim: bool = True) -> SourceBank:
    """Read real recordings (any format, resampled to 16 kHz mono) into a :class:`SourceBank`,
    cutting each into its active segments when ``trim``."""
    from atst_sed.audio import load_audio

    bank = SourceBank()
    for label, paths in files.items():
        for path in paths:
            x = load_audio(path).numpy().astype(np.float64)
            segments = active_segments(x) if trim else [(0, len(x))]
            for i, (s, e) in enumerate(segments):
                bank.clips.setdefault(label, []).append((f"{path}#{i}", x[s:e]))
        log.debug("source bank %s: %d segments", label, len(bank.clips.get(label, [])))
    return bank
