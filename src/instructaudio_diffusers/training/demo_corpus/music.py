"""Procedural music at 22,050 Hz: genre templates, five synthesized lead instruments, drums, key and mode.

A piece is fully described by a `MusicSpec` (genre, instrument, tempo, tonic, mode, drums, length, seed),
and `render_music(spec)` is a pure function of it. Everything is built from note events on an exact beat
grid, so the requested tempo is the tempo a beat tracker finds, and harmony is strictly diatonic in the
requested mode (natural minor: no raised leading tone), so the tonic's minor third never sounds in a
major piece and its major third never in a minor one.

Parts: the **lead instrument** plays both the melody and the genre's accompaniment figure (block chords,
power chords, arpeggios, Alberti bass, swung stabs or pads), so the instrument label names every pitched
sound except the bass, which is a neutral sine-based voice; drums are optional. Instruments:

- piano: additive partials with slight inharmonicity, faster decay for higher partials, damped at note-off;
- strings: three detuned sawtooth-like voices with slow attack and delayed vibrato (an ensemble);
- organ: drawbar sines (sub-octave to 8th harmonic), instant attack, Leslie-like amplitude wobble;
- synth: subtractive-style: two detuned sawtooths through a decaying low-pass envelope (per partial);
- guitar: Karplus-Strong plucked string (a noise burst through a damped delay-line loop, `scipy.signal.lfilter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from .levels import SAMPLING_RATE, set_level

__all__ = [
    "GENRES",
    "INSTRUMENTS",
    "MusicSpec",
    "atmosphere",
    "genre_bpm_range",
    "key_name",
    "render_music",
    "sample_music_spec",
]

GENRES = ("pop", "rock", "electronic", "classical", "jazz", "ambient")
INSTRUMENTS = ("piano", "strings", "organ", "synth", "guitar")
MODES = ("major", "minor")
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_SHARP_NAMES = ("C", "C sharp", "D", "D sharp", "E", "F", "F sharp", "G", "G sharp", "A", "A sharp", "B")
_FLAT_NAMES = ("C", "D flat", "D", "E flat", "E", "F", "G flat", "G", "A flat", "A", "B flat", "B")
# Conventional spellings: flats for Db/Eb/Ab/Bb major and Eb/Bb minor, sharps otherwise.
_FLAT_TONICS = {"major": {1, 3, 8, 10}, "minor": {3, 10}}


@dataclass(frozen=True)
class MusicSpec:
    """Everything that determines a piece; `render_music` is a pure function of it."""

    genre: str
    instrument: str
    bpm: int
    tonic: int  # pitch class, 0 = C
    mode: str  # major | minor
    drums: bool
    duration_s: float
    seed: int


@dataclass(frozen=True)
class _Genre:
    progressions: dict[str, tuple[tuple[int, ...], ...]]  # scale degrees (0 = tonic) of chord roots, per mode
    bpm_range: tuple[int, int]
    beats_per_chord: int
    sevenths: bool
    comp: str  # block | power | arpeggio | alberti | stabs | pad
    bass: str  # quarters | eighths | offbeat | walking | sustained
    melody_cells: tuple[tuple[float, ...], ...]  # onsets (in beats) within one 4/4 bar
    drums: dict[str, tuple[int, ...]]  # drum -> 16th-note steps within a bar
    swing: float  # delay of off-beat eighths, in beats
    reverb_s: float
    drum_odds: float  # how often this genre has drums when sampling


_GENRES: dict[str, _Genre] = {
    "pop": _Genre(
        {"major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4)), "minor": ((0, 5, 2, 6), (0, 3, 6, 5), (0, 6, 5, 6))},
        (88, 128), 4, False, "block", "quarters",
        ((0, 1, 2, 2.5, 3), (0, 0.5, 1, 2, 3), (0, 1.5, 2, 3), (0, 1, 1.5, 2, 3, 3.5)),
        {"kick": (0, 8, 10), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)}, 0.0, 0.4, 0.85),
    "rock": _Genre(
        {"major": ((0, 3, 4, 3), (0, 6, 3, 0), (0, 4, 3, 3)), "minor": ((0, 6, 5, 6), (0, 3, 6, 0), (0, 5, 3, 4))},
        (100, 168), 4, False, "power", "eighths",
        ((0, 1, 2, 3), (0, 0.5, 1.5, 2, 3), (0, 1, 2, 2.5, 3.5)),
        {"kick": (0, 6, 8), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)}, 0.0, 0.3, 0.9),
    "electronic": _Genre(
        {"major": ((5, 3, 0, 4), (0, 4, 5, 3)), "minor": ((0, 5, 2, 6), (0, 6, 5, 6), (0, 3, 4, 0))},
        (112, 150), 4, False, "arpeggio", "offbeat",
        ((0, 0.75, 1.5, 2, 3), (0, 0.5, 1, 1.5, 2, 2.5, 3), (0, 1.5, 3)),
        {"kick": (0, 4, 8, 12), "clap": (4, 12), "open_hat": (2, 6, 10, 14), "hat": tuple(range(16))},
        0.0, 0.5, 0.95),
    "classical": _Genre(
        {"major": ((0, 3, 4, 0), (0, 5, 1, 4), (0, 4, 5, 3)), "minor": ((0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 2, 4))},
        (60, 140), 4, False, "alberti", "sustained",
        ((0, 1, 2, 3), (0, 1, 1.5, 2, 3), (0, 2, 3), (0, 0.5, 1, 1.5, 2, 3)),
        {"kick": (0, 8), "snare": (12,)}, 0.0, 1.2, 0.15),
    "jazz": _Genre(
        {"major": ((1, 4, 0, 0), (0, 5, 1, 4), (0, 3, 1, 4)), "minor": ((0, 3, 6, 2), (0, 5, 3, 4), (0, 3, 0, 6))},
        (80, 180), 4, True, "stabs", "walking",
        ((0, 1.5, 2, 3), (0.5, 1, 2.5, 3), (0, 0.5, 1, 2, 2.5, 3)),
        {"ride": (0, 4, 6, 8, 12, 14), "pedal_hat": (4, 12), "kick": (0,)}, 1 / 6, 0.6, 0.8),
    "ambient": _Genre(
        {"major": ((0, 5, 3, 4), (0, 3, 0, 4)), "minor": ((0, 5, 3, 0), (0, 6, 5, 0))},
        (60, 92), 8, True, "pad", "sustained",
        ((0, 2), (0, 3), (1, 2.5), (0,)),
        {"kick": (0,), "shaker": (2, 6, 10, 14)}, 0.0, 2.0, 0.15),
}  # fmt: skip


def genre_bpm_range(genre: str) -> tuple[int, int]:
    """The lowest and highest tempo (BPM) the corpus gives a piece of `genre`."""
    return _GENRES[genre].bpm_range


def atmosphere(mode: str, bpm: int) -> str:
    """The mood word a mode and tempo imply: major fast happy / slow calm, minor fast tense / slow sad."""
    if mode == "major":
        return "happy" if bpm >= 100 else "calm"
    return "tense" if bpm >= 110 else "sad"


def key_name(tonic: int, mode: str) -> str:
    """English key name, e.g. `key_name(3, "major") == "E flat major"`."""
    names = _FLAT_NAMES if tonic in _FLAT_TONICS[mode] else _SHARP_NAMES
    return f"{names[tonic]} {mode}"


def sample_music_spec(rng: np.random.Generator, seed: int) -> MusicSpec:
    """Draw a piece: genre and instrument uniform, tempo within the genre's usual range, drums as usual."""
    genre = str(rng.choice(GENRES))
    template = _GENRES[genre]
    return MusicSpec(
        genre=genre,
        instrument=str(rng.choice(INSTRUMENTS)),
        bpm=int(rng.integers(template.bpm_range[0], template.bpm_range[1] + 1)),
        tonic=int(rng.integers(12)),
        mode=str(rng.choice(MODES)),
        drums=bool(rng.random() < template.drum_odds),
        duration_s=round(float(rng.uniform(5.0, 15.0)), 2),
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------- instruments
def _hz(midi: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((np.asarray(midi) - 69) / 12)


def _adsr(n: int, held: int, attack: float, release: float, decay_to: float = 1.0, decay_s: float = 0.2):
    """Attack to 1, exponential decay towards `decay_to` while held, then an exponential release."""
    t = np.arange(n) / SAMPLING_RATE
    envelope = decay_to + (1 - decay_to) * np.exp(-t / decay_s)
    envelope *= np.minimum(1.0, t / max(attack, 1e-3))
    after = np.maximum(0, np.arange(n) - held) / SAMPLING_RATE
    return envelope * np.exp(-after / max(release / 5, 1e-3))


def _additive(
    frequency: float, n: int, amplitudes: np.ndarray, ratios: np.ndarray, decays: np.ndarray | None
):
    """Sum of partials `ratios * frequency` (those below 9 kHz), each with an optional exponential decay."""
    keep = ratios * frequency < 9000
    t = np.arange(n) / SAMPLING_RATE
    phases = 2 * np.pi * frequency * ratios[keep, None] * t[None, :]
    partials = amplitudes[keep, None] * np.sin(phases)
    if decays is not None:
        partials *= np.exp(-t[None, :] / decays[keep, None])
    return partials.sum(axis=0)


def _piano(midi: int, held: int, rng: np.random.Generator) -> np.ndarray:
    frequency = float(_hz(midi))
    n = held + int(0.25 * SAMPLING_RATE)
    k = np.arange(1, 13, dtype=np.float64)
    ratios = k * np.sqrt(1 + 4e-4 * k**2)  # stiff-string inharmonicity
    base_decay = 1.6 * (261.6 / frequency) ** 0.5
    tone = _additive(frequency, n, 1 / k**1.3, ratios, base_decay / (1 + 0.5 * (k - 1)))
    return tone * _adsr(n, held, 0.004, 0.2)


def _strings(midi: int, held: int, rng: np.random.Generator) -> np.ndarray:
    frequency = float(_hz(midi))
    n = held + int(0.35 * SAMPLING_RATE)
    t = np.arange(n) / SAMPLING_RATE
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t) * np.minimum(1.0, t / 0.35)
    k = np.arange(1, 11, dtype=np.float64)
    k = k[k * frequency < 9000]
    tone = np.zeros(n)
    # Three players, slightly out of tune: an ensemble, not one oscillator.
    for detune in (-0.004, 0.0, 0.005):
        phase = 2 * np.pi * np.cumsum(frequency * (1 + detune) * vibrato) / SAMPLING_RATE
        tone += ((1 / k[:, None]) * np.sin(k[:, None] * phase[None, :] + rng.uniform(0, 6.3))).sum(axis=0)
    return tone / 2 * _adsr(n, held, 0.12, 0.3)


def _organ(midi: int, held: int, rng: np.random.Generator) -> np.ndarray:
    frequency = float(_hz(midi))
    n = held + int(0.06 * SAMPLING_RATE)
    ratios = np.array([0.5, 1, 2, 3, 4, 6, 8], dtype=np.float64)
    amplitudes = np.array([0.5, 1.0, 0.8, 0.6, 0.45, 0.3, 0.25])
    t = np.arange(n) / SAMPLING_RATE
    tone = _additive(frequency, n, amplitudes, ratios, None) * (1 + 0.12 * np.sin(2 * np.pi * 6.2 * t))
    return tone / 2 * _adsr(n, held, 0.01, 0.05)


def _synth(midi: int, held: int, rng: np.random.Generator) -> np.ndarray:
    frequency = float(_hz(midi))
    n = held + int(0.15 * SAMPLING_RATE)
    t = np.arange(n) / SAMPLING_RATE
    k = np.arange(1, 25, dtype=np.float64)
    k = k[k * frequency < 9000]
    cutoff = frequency * (1.5 + 10 * np.exp(-t / 0.18))  # filter envelope: bright attack, darker sustain
    tone = np.zeros(n)
    for detune in (0.0, 0.006):
        gains = 1 / (1 + (k[:, None] * frequency / cutoff[None, :]) ** 4)  # 4th-order low-pass magnitude
        partials = np.sin(2 * np.pi * frequency * (1 + detune) * k[:, None] * t)
        tone += ((gains / k[:, None]) * partials).sum(axis=0)
    return tone / 1.5 * _adsr(n, held, 0.01, 0.15, decay_to=0.7, decay_s=0.3)


def _guitar(midi: int, held: int, rng: np.random.Generator) -> np.ndarray:
    frequency = float(_hz(midi))
    n = held + int(0.1 * SAMPLING_RATE)
    period = max(2, int(round(SAMPLING_RATE / frequency - 0.5)))  # the loop's averager adds half a sample
    burst = np.zeros(n)
    burst[:period] = signal.lfilter([0.5, 0.5], [1.0], rng.uniform(-1, 1, period))  # a softer pick
    loop = np.zeros(period + 2)
    # y[n] = x[n] + 0.994 * mean(y[n - p], y[n - p - 1]): the plucked string's damped delay loop.
    loop[0], loop[period], loop[period + 1] = 1.0, -0.497, -0.497
    return signal.lfilter([1.0], loop, burst) * _adsr(n, held, 0.001, 0.08)


_INSTRUMENTS = {"piano": _piano, "strings": _strings, "organ": _organ, "synth": _synth, "guitar": _guitar}
# Output level per instrument, so that a piano melody and a string melody sit alike against the drums.
_INSTRUMENT_GAIN = {"piano": 1.0, "strings": 0.55, "organ": 0.45, "synth": 0.6, "guitar": 1.6}


def _bass(midi: int, held: int, rng: np.random.Generator) -> np.ndarray:
    frequency = float(_hz(midi))
    n = held + int(0.08 * SAMPLING_RATE)
    tone = _additive(frequency, n, np.array([1.0, 0.35, 0.12]), np.array([1.0, 2.0, 3.0]), None)
    return tone * _adsr(n, held, 0.008, 0.08, decay_to=0.6, decay_s=0.4)


# ---------------------------------------------------------------------------------------------- drums
def _drum_sounds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One sample per drum for the whole piece (seeded noise), as a kit would sound."""

    def seconds(s: float) -> np.ndarray:
        return np.arange(int(s * SAMPLING_RATE)) / SAMPLING_RATE

    def noise(s: float) -> np.ndarray:
        return rng.uniform(-1, 1, int(s * SAMPLING_RATE))

    def band(x: np.ndarray, low: float, high: float | None = None) -> np.ndarray:
        if high is None:
            sos = signal.butter(2, low, "highpass", fs=SAMPLING_RATE, output="sos")
        else:
            sos = signal.butter(2, (low, high), "bandpass", fs=SAMPLING_RATE, output="sos")
        return signal.sosfilt(sos, x)

    t = seconds(0.35)
    kick = np.sin(2 * np.pi * (45 * t + (110 / 30) * (1 - np.exp(-30 * t)))) * np.exp(-t / 0.12)
    t = seconds(0.2)
    snare = 0.5 * np.sin(2 * np.pi * 185 * t) * np.exp(-t / 0.04)
    snare += band(noise(0.2), 1500, 7000) * np.exp(-t / 0.06)
    clap = band(noise(0.2), 900, 4000) * np.exp(-t / 0.05) * (1 + (t < 0.02) * np.sin(2 * np.pi * 150 * t))
    hat = band(noise(0.05), 7000) * np.exp(-seconds(0.05) / 0.012)
    open_hat = band(noise(0.25), 6000) * np.exp(-seconds(0.25) / 0.08)
    pedal_hat = 0.6 * hat
    ride = band(noise(0.6), 5000) * np.exp(-seconds(0.6) / 0.25) * 0.5
    shaker = band(noise(0.08), 4000) * np.exp(-seconds(0.08) / 0.03) * 0.5
    return {
        "kick": kick,
        "snare": snare,
        "clap": clap,
        "hat": 0.5 * hat,
        "open_hat": 0.5 * open_hat,
        "pedal_hat": pedal_hat,
        "ride": ride,
        "shaker": shaker,
    }


# ---------------------------------------------------------------------------------------------- score
@dataclass
class _Part:
    """Note events of one voice: (start in beats, length in beats, MIDI pitch, velocity)."""

    events: list[tuple[float, float, int, float]]


def _chord(scale: tuple[int, ...], degree: int, size: int) -> list[int]:
    """Semitones above the tonic of the diatonic chord on `degree` (3 or 4 notes, stacked thirds)."""
    return [scale[(degree + 2 * i) % 7] + 12 * ((degree + 2 * i) // 7) for i in range(size)]


def _score(spec: MusicSpec, template: _Genre, bars: int, rng: np.random.Generator):
    """Melody, accompaniment and bass events, and the chord (semitones above the tonic) of each bar."""
    scale = _SCALES[spec.mode]
    progression = template.progressions[spec.mode][int(rng.integers(len(template.progressions[spec.mode])))]
    bars_per_chord = template.beats_per_chord // 4
    chords = [
        _chord(scale, progression[(bar // bars_per_chord) % len(progression)], 4 if template.sevenths else 3)
        for bar in range(bars)
    ]
    chords[-1] = _chord(scale, 0, 4 if template.sevenths else 3)  # end on the tonic: the key is heard
    root = 48 + spec.tonic if spec.tonic < 7 else 36 + spec.tonic  # accompaniment around C3-F#4
    melody_root = root + 12
    # A two-bar motif repeated with variations: musical, and its period reinforces the beat.
    motif = [template.melody_cells[int(rng.integers(len(template.melody_cells)))] for _ in range(2)]
    melody, comp, bass = _Part([]), _Part([]), _Part([])
    degree = int(rng.integers(0, 5))
    for bar, chord in enumerate(chords):
        cells = template.melody_cells
        cell = motif[bar % 2] if rng.random() < 0.75 else cells[int(rng.integers(len(cells)))]
        onsets = list(cell) + [4.0]
        for i, onset in enumerate(onsets[:-1]):
            if onset == 0 or rng.random() < 0.3:  # strong beats and some others land on chord tones
                tones = [scale.index(tone % 12) + 7 * (tone // 12) for tone in chord[:3]]
                degree = min(tones, key=lambda d: abs(d - degree) + rng.random())
            else:
                degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2]), -2, 11))
            pitch = melody_root + scale[degree % 7] + 12 * (degree // 7)
            melody.events.append((4 * bar + onset, onsets[i + 1] - onset, pitch, 0.75 + 0.15 * rng.random()))
        _accompany(template.comp, 4 * bar, [root + tone for tone in chord], comp)
        bass_root = 33 + (spec.tonic + chord[0] - 33) % 12  # the chord's root between A1 and G#2
        _bass_line(template.bass, 4 * bar, [bass_root + tone - chord[0] for tone in chord], bass)
    return melody, comp, bass


def _accompany(style: str, start: float, notes: list[int], part: _Part) -> None:
    def hit(offset: float, length: float, pitches: list[int], velocity: float) -> None:
        part.events.extend((start + offset, length, pitch, velocity) for pitch in pitches)

    if style == "block":
        hit(0, 2, notes[:3], 0.4)
        hit(2, 2, notes[:3], 0.35)
    elif style == "power":
        for eighth in range(8):
            hit(eighth / 2, 0.45, [notes[0], notes[0] + 7, notes[0] + 12], 0.4 if eighth % 2 else 0.5)
    elif style == "arpeggio":
        pattern = [notes[0], notes[1], notes[2], notes[0] + 12]
        for step in range(16):
            part.events.append((start + step / 4, 0.24, pattern[step % 4] + 12, 0.3 + 0.1 * (step % 4 == 0)))
    elif style == "alberti":
        pattern = [notes[0], notes[2], notes[1], notes[2]]
        for eighth in range(8):
            part.events.append((start + eighth / 2, 0.5, pattern[eighth % 4], 0.35))
    elif style == "stabs":
        hit(1.5, 0.4, notes, 0.35)
        hit(3.0, 0.6, notes, 0.3)
    elif style == "pad":
        hit(0, 4, notes, 0.3)
    else:
        raise ValueError(f"Unknown accompaniment style {style!r}.")


def _bass_line(style: str, start: float, chord: list[int], part: _Part) -> None:
    """Bass events for one bar over `chord` (MIDI pitches, root first); only chord tones, so always in mode."""

    def note(offset: float, length: float, pitch: int, velocity: float = 0.8) -> None:
        part.events.append((start + offset, length, pitch, velocity))

    root = chord[0]
    if style == "quarters":
        for beat, pitch in enumerate((root, root, chord[2], root)):
            note(beat, 0.9, pitch)
    elif style == "eighths":
        for eighth in range(8):
            note(eighth / 2, 0.45, root, 0.7 + 0.1 * (eighth % 2 == 0))
    elif style == "offbeat":
        for beat in range(4):
            note(beat + 0.5, 0.45, root)
    elif style == "walking":  # root, third, fifth, then the seventh (or octave) leading on
        for beat, pitch in enumerate((root, chord[1], chord[2], chord[3] if len(chord) > 3 else root + 12)):
            note(beat, 0.95, pitch, 0.75)
    elif style == "sustained":
        note(0, 4, root, 0.6)
    else:
        raise ValueError(f"Unknown bass style {style!r}.")


# ---------------------------------------------------------------------------------------------- rendering
def _place(buffer: np.ndarray, start: int, sound: np.ndarray) -> None:
    end = min(buffer.size, start + sound.size)
    if start < end:
        buffer[start:end] += sound[: end - start]


def _render_part(
    part: _Part, voice, beat_s: float, swing: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthesize every event; notes of equal pitch and length are rendered once and reused (scaled)."""
    buffer = np.zeros(n)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for onset, length, pitch, velocity in part.events:
        if swing and abs(onset * 2 - round(onset * 2)) < 1e-6 and round(onset * 2) % 2 == 1:
            onset += swing  # off-beat eighth, played late
        held = max(1, int(length * beat_s * SAMPLING_RATE))
        key = (pitch, held)
        if key not in cache:
            cache[key] = voice(pitch, held, rng)
        _place(buffer, int(round(onset * beat_s * SAMPLING_RATE)), velocity * cache[key])
    return buffer


def _render_drums(template: _Genre, bars: int, beat_s: float, n: int, rng: np.random.Generator) -> np.ndarray:
    sounds = _drum_sounds(rng)
    buffer = np.zeros(n)
    for bar in range(bars):
        for drum, steps in template.drums.items():
            for step in steps:
                onset = bar * 4 + step / 4
                if template.swing and step % 4 == 2:
                    onset += template.swing
                accent = 1.0 if step % 4 == 0 else 0.7
                _place(buffer, int(round(onset * beat_s * SAMPLING_RATE)), accent * sounds[drum])
    return buffer


def render_music(spec: MusicSpec) -> np.ndarray:
    """Render `spec` as mono float32 at 22,050 Hz, `spec.duration_s` long, at the reference loudness.

    Raises:
        ValueError: for an unknown genre or instrument, a tempo outside 40-240 BPM, or a bad tonic/mode.
    """
    if spec.genre not in _GENRES or spec.instrument not in _INSTRUMENTS:
        raise ValueError(f"Unknown genre {spec.genre!r} or instrument {spec.instrument!r}.")
    if not 40 <= spec.bpm <= 240 or spec.mode not in MODES or not 0 <= spec.tonic < 12:
        raise ValueError(f"Bad tempo, mode or tonic in {spec}.")
    rng = np.random.default_rng(spec.seed)
    template = _GENRES[spec.genre]
    beat_s = 60.0 / spec.bpm
    n = int(spec.duration_s * SAMPLING_RATE)
    bars = int(np.ceil(spec.duration_s / (4 * beat_s)))
    melody, comp, bass = _score(spec, template, bars, rng)
    voice = _INSTRUMENTS[spec.instrument]
    pitched = _render_part(melody, voice, beat_s, template.swing, n, rng)
    pitched += 0.7 * _render_part(comp, voice, beat_s, template.swing, n, rng)
    pitched *= _INSTRUMENT_GAIN[spec.instrument]
    if spec.genre == "rock" and spec.instrument in ("guitar", "synth", "organ"):
        pitched = np.tanh(2.5 * pitched) / 1.5  # overdriven, as rock plays these
    mix = pitched + 0.5 * _render_part(bass, _bass, beat_s, template.swing, n, rng)
    if spec.drums:
        mix += 0.6 * _render_drums(template, bars, beat_s, n, rng)
    if template.reverb_s > 0:
        length = int(template.reverb_s * SAMPLING_RATE)
        impulse = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / length)  # -60 dB at its end
        wet = signal.fftconvolve(mix, impulse)[:n]
        mix = mix + 0.25 * wet * np.sqrt(np.mean(mix**2) / (np.mean(wet**2) + 1e-12))
    fade = np.ones(n)
    fade_in, fade_out = int(0.01 * SAMPLING_RATE), int(0.4 * SAMPLING_RATE)
    fade[:fade_in] = np.linspace(0, 1, fade_in)
    fade[-fade_out:] = np.linspace(1, 0, fade_out)
    return set_level((mix * fade).astype(np.float32))
