"""Speech rendering with Debian's `flite` and `espeak-ng`, prosody variants with `sox`, and labels that say
exactly what was done to each clip.

A clip is a `Persona` (engine, voice and the fixed transform that gives it a gender/age/accent) speaking
with a `Prosody` (pitch shift, tempo, level, style). Labels are derived from the numbers by one function,
`prosody_labels`, so a label can never disagree with the audio it describes:

- pitch: `sox pitch` shift relative to the persona's own voice (>= +150 cents high, <= -150 cents low);
- rate: `sox tempo` factor (>= 1.1 fast, <= 0.9 slow);
- loudness: level relative to the -20 dBFS reference of a normal clip (>= +5 dB loud, <= -6 dB soft);
- emotion: **acoustic proxies**, not acted speech: happy = higher and faster, sad = lower, slower and
  softer, angry = louder, faster and slightly driven (`sox overdrive`);
- style: whisper (espeak-ng's whisper variants, or for flite voices a noise-excited copy of the spectral
  envelope), telephone (300-3400 Hz band).

Child and elderly personas are proxies too and say so in their `age_method`: a child is an adult voice with
its pitch and formants raised together (`sox pitch` resamples, so formants move with F0), an elderly flite
voice is slower, lower and has an amplitude tremolo; espeak-ng's own `grandma`/`grandpa` variants are used
where they exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy import signal

from .levels import SAMPLING_RATE, active_bounds, set_level

__all__ = [
    "CHINESE_PERSONAS",
    "EMOTION_PROXIES",
    "ENGLISH_PERSONAS",
    "SAMPLING_RATE",
    "Persona",
    "Prosody",
    "TRIM_MARGIN_S",
    "concatenate_turns",
    "engine_text",
    "espeak_settings",
    "gap_samples",
    "missing_tools",
    "persona_attributes",
    "persona_by_name",
    "process_engine_audio",
    "prosody_labels",
    "render_turn",
    "sample_prosody",
    "sox_time_effects",
    "trim_bounds",
    "uses_engine_whisper",
    "warm_up",
    "whisperize",
]

_WHISPER_GAIN_DB = -8.0  # whispers are quiet; the label follows from this level (soft)
TRIM_MARGIN_S = 0.15  # silence kept before and after a turn's active part


@dataclass(frozen=True)
class Persona:
    """One speaker: an engine voice plus the fixed transform that makes its timbre.

    `base_pitch_cents`/`base_tempo` belong to the persona (a child proxy is +450 cents), so prosody labels
    stay relative to the persona's own voice.
    """

    name: str
    language: str  # en | zh
    engine: str  # flite | espeak-ng
    voice: str  # flite voice, or espeak-ng voice name without variant
    gender: str  # female | male
    age: str  # child | young | adult | elderly
    accent: str  # american | british | scottish | standard_mandarin
    variant: str | None = None  # espeak-ng variant (+f3, +grandpa, ...)
    whisper_variant: str | None = None  # espeak-ng whisper variant, None: noise-excited envelope
    espeak_pitch: int | None = None  # espeak-ng -p (0-99)
    espeak_speed: int = 160  # espeak-ng -s, words per minute
    base_pitch_cents: int = 0
    base_tempo: float = 1.0
    tremolo: bool = False
    age_method: str = "engine voice"
    weight: float = 1.0


def _espeak(name: str, language: str, voice: str, variant: str, gender: str, age: str, accent: str, **kw):
    whisper = "whisperf" if gender == "female" else "whisper"
    # espeak-ng's Mandarin at 160 wpm is ~3.6 syllables/s, slower than read Mandarin (4-5/s); 190 gives ~4.4.
    kw.setdefault("espeak_speed", 190 if language == "zh" else 160)
    return Persona(name, language, "espeak-ng", voice, gender, age, accent, variant, whisper, **kw)


_CHILD = "adult voice with pitch and formants raised together (sox pitch)"
_ELDERLY = "slower, lower voice with amplitude tremolo (sox tempo, pitch, tremolo)"
ENGLISH_PERSONAS: tuple[Persona, ...] = (
    Persona("flite_slt", "en", "flite", "slt", "female", "young", "american", weight=3.0),
    Persona("flite_rms", "en", "flite", "rms", "male", "adult", "american", weight=3.0),
    Persona("flite_awb", "en", "flite", "awb", "male", "adult", "scottish", weight=2.0),
    Persona("flite_kal16", "en", "flite", "kal16", "male", "adult", "american", weight=1.5),
    Persona("flite_slt_child", "en", "flite", "slt", "female", "child", "american", base_pitch_cents=450,
            age_method=_CHILD, weight=1.0),
    # A boy from a man's voice: +750 cents puts F0 near 160 Hz and scales formants by ~1.5 (Whisper tiny.en
    # still transcribes it with ~6 % WER, against ~35 % for espeak-ng's child proxies).
    Persona("flite_rms_child", "en", "flite", "rms", "male", "child", "american", base_pitch_cents=750,
            age_method=_CHILD, weight=1.5),
    Persona("flite_slt_elderly", "en", "flite", "slt", "female", "elderly", "american", base_pitch_cents=-150,
            base_tempo=0.88, tremolo=True, age_method=_ELDERLY, weight=1.0),
    Persona("flite_rms_elderly", "en", "flite", "rms", "male", "elderly", "american", base_pitch_cents=-80,
            base_tempo=0.88, tremolo=True, age_method=_ELDERLY, weight=1.0),
    _espeak("espeak_en-us_f3", "en", "en-us", "f3", "female", "adult", "american", weight=2.0),
    _espeak("espeak_en-us_f4", "en", "en-us", "f4", "female", "young", "american", weight=1.5),
    # espeak-ng ignores a variant after "en-gb" (en-gb+f2 == en-gb); its British voice is named "en".
    _espeak("espeak_en_f2", "en", "en", "f2", "female", "adult", "british", weight=1.5),
    _espeak("espeak_en-gb-scotland_f5", "en", "en-gb-scotland", "f5", "female", "adult", "scottish", weight=1.0),
    _espeak("espeak_en-us_m3", "en", "en-us", "m3", "male", "adult", "american", weight=1.0),
    _espeak("espeak_en_m1", "en", "en", "m1", "male", "young", "british", weight=1.0),
    _espeak("espeak_en-gb-x-rp_m7", "en", "en-gb-x-rp", "m7", "male", "adult", "british", weight=1.0),
    _espeak("espeak_en-us_grandma", "en", "en-us", "grandma", "female", "elderly", "american",
            age_method="espeak-ng grandma variant", weight=1.0),
    _espeak("espeak_en_grandpa", "en", "en", "grandpa", "male", "elderly", "british",
            age_method="espeak-ng grandpa variant", weight=1.0),
    _espeak("espeak_en-us_f4_child", "en", "en-us", "f4", "female", "child", "american", espeak_pitch=75,
            base_pitch_cents=400, age_method=_CHILD, weight=1.0),
    _espeak("espeak_en-us_m3_child", "en", "en-us", "m3", "male", "child", "american", espeak_pitch=90,
            base_pitch_cents=550, age_method=_CHILD, weight=1.0),
)  # fmt: skip

_ZH = "cmn-latn-pinyin"
_MANDARIN = "standard_mandarin"
CHINESE_PERSONAS: tuple[Persona, ...] = (
    _espeak("espeak_zh_f2", "zh", _ZH, "f2", "female", "adult", _MANDARIN, weight=1.5),
    _espeak("espeak_zh_f3", "zh", _ZH, "f3", "female", "adult", _MANDARIN, weight=1.0),
    _espeak("espeak_zh_f4", "zh", _ZH, "f4", "female", "young", _MANDARIN, weight=1.5),
    _espeak("espeak_zh_f5", "zh", _ZH, "f5", "female", "young", _MANDARIN, weight=1.0),
    _espeak("espeak_zh_m1", "zh", _ZH, "m1", "male", "young", _MANDARIN, weight=1.5),
    _espeak("espeak_zh_m3", "zh", _ZH, "m3", "male", "adult", _MANDARIN, weight=1.5),
    _espeak("espeak_zh_m7", "zh", _ZH, "m7", "male", "adult", _MANDARIN, weight=1.0),
    _espeak("espeak_zh_grandma", "zh", _ZH, "grandma", "female", "elderly", _MANDARIN,
            age_method="espeak-ng grandma variant", weight=1.0),
    _espeak("espeak_zh_grandpa", "zh", _ZH, "grandpa", "male", "elderly", _MANDARIN,
            age_method="espeak-ng grandpa variant", weight=1.0),
    _espeak("espeak_zh_f4_child", "zh", _ZH, "f4", "female", "child", _MANDARIN, espeak_pitch=75,
            base_pitch_cents=400, age_method=_CHILD, weight=1.0),
    _espeak("espeak_zh_m3_child", "zh", _ZH, "m3", "male", "child", _MANDARIN, espeak_pitch=90,
            base_pitch_cents=550, age_method=_CHILD, weight=1.0),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- prosody
@dataclass(frozen=True)
class Prosody:
    """What is done to a persona's voice; labels come from `prosody_labels`, never stored separately."""

    pitch_cents: int = 0
    tempo: float = 1.0
    gain_db: float = 0.0
    emotion: str = "neutral"  # neutral | happy | sad | angry (acoustic proxies)
    style: str = "normal"  # normal | whisper | telephone


# Emotion proxies: (pitch cents, tempo, gain dB). Their labels follow from the same thresholds as any clip.
EMOTION_PROXIES: dict[str, tuple[int, float, float]] = {
    "happy": (250, 1.13, 2.0),
    "sad": (-220, 0.84, -8.0),
    "angry": (100, 1.15, 7.0),
}
_PITCH_RANGES = {"low": (-350, -200), "normal": (-60, 60), "high": (200, 350)}
_RATE_RANGES = {"slow": (0.74, 0.84), "normal": (0.95, 1.05), "fast": (1.18, 1.32)}
_LOUDNESS_DB = {"soft": -11.0, "normal": 0.0, "loud": 7.0}


def prosody_labels(prosody: Prosody) -> dict[str, str]:
    """The words an instruction may use for this prosody: pitch, rate, loudness, emotion and style."""
    pitch = "high" if prosody.pitch_cents >= 150 else "low" if prosody.pitch_cents <= -150 else "normal"
    rate = "fast" if prosody.tempo >= 1.1 else "slow" if prosody.tempo <= 0.9 else "normal"
    loudness = "loud" if prosody.gain_db >= 5.0 else "soft" if prosody.gain_db <= -6.0 else "normal"
    return {
        "pitch": pitch,
        "rate": rate,
        "loudness": loudness,
        "emotion": prosody.emotion,
        "style": prosody.style,
    }


def sample_prosody(rng: np.random.Generator) -> Prosody:
    """Draw a prosody: 55 % neutral with independent pitch/rate/loudness levels, 45 % an emotion proxy.

    Whisper keeps a neutral emotion and a soft level (a loud whisper is not a whisper); telephone is a
    channel and combines with anything.
    """
    style = str(rng.choice(["normal", "whisper", "telephone"], p=[0.85, 0.08, 0.07]))
    emotion = (
        "neutral"
        if style == "whisper"
        else str(rng.choice(["neutral", "happy", "sad", "angry"], p=[0.55, 0.15, 0.15, 0.15]))
    )
    if emotion != "neutral":
        cents, tempo, gain = EMOTION_PROXIES[emotion]
        # Small jitter so that emotional clips are not all one setting; labels stay put (see thresholds).
        return Prosody(
            int(cents + rng.integers(-30, 31)),
            round(tempo + rng.uniform(-0.02, 0.02), 3),
            gain + round(float(rng.uniform(-0.5, 0.5)), 2),
            emotion,
            style,
        )
    odds = [0.25, 0.5, 0.25]
    pitch = str(rng.choice(["low", "normal", "high"], p=odds))
    rate = str(rng.choice(["slow", "normal", "fast"], p=odds))
    loudness = str(rng.choice(["soft", "normal", "loud"], p=odds))
    cents = 0 if style == "whisper" else int(rng.integers(*_PITCH_RANGES[pitch]))
    tempo = round(float(rng.uniform(*_RATE_RANGES[rate])), 3)
    gain = (
        _WHISPER_GAIN_DB
        if style == "whisper"
        else _LOUDNESS_DB[loudness] + round(float(rng.uniform(-1, 1)), 2)
    )
    return Prosody(cents, tempo, gain, "neutral", style)


def persona_attributes(persona: Persona, prosody: Prosody) -> dict[str, object]:
    """Metadata columns describing one speaker's clip: who, how, and by which engine and transform."""
    labels = prosody_labels(prosody)
    return {
        "engine": persona.engine,
        "voice": persona.voice + (f"+{persona.variant}" if persona.variant else ""),
        "persona": persona.name,
        "gender": persona.gender,
        "age": persona.age,
        "age_method": persona.age_method,
        "accent": persona.accent,
        **labels,
        "emotion_method": "acoustic proxy (sox pitch/tempo/gain)" if prosody.emotion != "neutral" else None,
        "whisper_method": (
            None
            if prosody.style != "whisper"
            else "espeak-ng whisper variant"
            if persona.whisper_variant
            else "noise-excited spectral envelope"
        ),
        "pitch_shift_cents": prosody.pitch_cents,
        "tempo_factor": prosody.tempo,
        "gain_db": prosody.gain_db,
    }


# ---------------------------------------------------------------------------------------------- rendering
def missing_tools() -> list[str]:
    """Command-line tools this module needs that are not on PATH."""
    return [tool for tool in ("flite", "espeak-ng", "sox") if shutil.which(tool) is None]


def engine_text(text: str, language: str) -> str:
    """What the engine is given: the processor's own reading of `text`, so audio and phonemes agree.

    English: `normalize_english` (numbers, times, prices as the processor reads them), with pauses glued
    back to their word so the engines phrase on them. Chinese: `normalize_chinese`, then the processor's
    surface pinyin (word segmentation, polyphones, tone sandhi), one word per space-separated token with its
    syllables joined ("yin2hang2"), neutral tone as 5, which is how espeak-ng's cmn-latn-pinyin voice reads
    tones; its `cmn` voice misreads Han characters (docs/design.md §5).
    """
    if language == "en":
        from instructaudio_diffusers.processing.english import normalize_english

        return re.sub(r" ([,.?!])", r"\1", normalize_english(text))
    if language != "zh":
        raise ValueError(f"No speech engine for language {language!r}.")
    from instructaudio_diffusers.processing.chinese import normalize_chinese

    normalized = "".join(normalize_chinese(text).split())
    pieces: list[str] = []
    for phrase, pause in re.findall(r"([^,.?!]*)([,.?!]?)", normalized):
        if phrase:
            pieces.append(" ".join("".join(word) for word in _chinese_g2p().pinyin(phrase)) + pause)
        elif pause and pieces:
            pieces[-1] += pause
    return " ".join(pieces)


def warm_up() -> None:
    """Load the text front ends now (the package import takes seconds), so forked workers inherit them."""
    engine_text("Warm up at 3:30.", "en")
    engine_text("你好。", "zh")


_G2P = None


def _chinese_g2p():
    """One `ChineseG2P` per process: building its jieba tokenizer costs ~0.6 s."""
    global _G2P
    if _G2P is None:
        from instructaudio_diffusers.processing.chinese import ChineseG2P

        _G2P = ChineseG2P()
    return _G2P


def _run(command: list[str]) -> bytes:
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return result.stdout


def espeak_settings(persona: Persona, whisper: bool) -> tuple[str, int | None, int]:
    """How espeak-ng is called for a persona: `(voice name with variant, -p pitch or None, -s words per minute)`."""
    variant = persona.whisper_variant if whisper else persona.variant
    return persona.voice + (f"+{variant}" if variant else ""), persona.espeak_pitch, persona.espeak_speed


def _synthesize(text: str, persona: Persona, whisper: bool, workdir: str) -> str:
    """Run the engine on `text` (already in engine form); returns the path of the wav it wrote."""
    text_file, wav_file = os.path.join(workdir, "text.txt"), os.path.join(workdir, "engine.wav")
    with open(text_file, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    if persona.engine == "flite":
        _run(["flite", "-voice", persona.voice, "-f", text_file, "-o", wav_file])
        return wav_file
    voice, pitch, speed = espeak_settings(persona, whisper)
    pitch_option = [] if pitch is None else ["-p", str(pitch)]
    _run(["espeak-ng", "-v", voice, *pitch_option, "-s", str(speed), "-f", text_file, "-w", wav_file])
    return wav_file


def sox_time_effects(persona: Persona, prosody: Prosody) -> list[str]:
    """The effects of a clip's sox chain that move time, in chain order: `pitch` and `tempo` (both WSOLA).

    `sox pitch` keeps the length; `sox tempo` divides durations by its factor. The rest of the chain
    (`_sox_effects`) is sample-wise or linear-phase filtering that sox compensates.
    """
    effects: list[str] = []
    cents = persona.base_pitch_cents + prosody.pitch_cents
    if cents:
        effects += ["pitch", str(cents)]
    tempo = round(persona.base_tempo * prosody.tempo, 4)
    if tempo != 1.0:
        effects += ["tempo", "-s", str(tempo)]  # -s: WSOLA settings tuned for speech
    return effects


def _sox_effects(persona: Persona, prosody: Prosody) -> list[str]:
    effects = sox_time_effects(persona, prosody)
    if persona.tremolo:
        effects += ["tremolo", "6", "30"]
    if prosody.emotion == "angry":
        effects += ["overdrive", "6"]
    if prosody.style == "telephone":
        effects += ["sinc", "300-3400"]
    return effects + ["rate", "-v", str(SAMPLING_RATE)]


def _apply_sox(wav_file: str, effects: list[str]) -> np.ndarray:
    # -R: repeatable (seeded) processing; -D: no dither; float output so quantisation happens once, at write.
    raw_float = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(SAMPLING_RATE)]
    raw = _run(["sox", "-R", "-D", "-q", wav_file, *raw_float, "-", *effects])
    return np.frombuffer(raw, dtype=np.float32).copy()


def whisperize(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE, seed: int = 0) -> np.ndarray:
    """Noise-excited copy of the spectral envelope: the voice's resonances without its periodic source.

    The envelope of every STFT frame is its liftered cepstrum (the first ~1.5 ms of quefrency, below any
    pitch period), so the harmonics disappear and only the formants stay, which is what a whisper is.
    """
    n_fft, hop = 1024, 256
    _, _, spectrum = signal.stft(audio, nperseg=n_fft, noverlap=n_fft - hop)
    cepstrum = np.fft.irfft(np.log(np.abs(spectrum) + 1e-6), axis=0)
    lifter = int(0.0015 * sampling_rate)
    cepstrum[lifter:-lifter] = 0.0
    envelope = np.exp(np.fft.rfft(cepstrum, axis=0).real)
    noise = np.random.default_rng(seed).standard_normal(audio.size + n_fft).astype(np.float32)
    _, _, noise_spectrum = signal.stft(noise, nperseg=n_fft, noverlap=n_fft - hop)
    _, whispered = signal.istft(
        envelope * noise_spectrum[:, : envelope.shape[1]], nperseg=n_fft, noverlap=n_fft - hop
    )
    return whispered[: audio.size].astype(np.float32)


def uses_engine_whisper(persona: Persona, prosody: Prosody) -> bool:
    """Whether a whisper comes from the engine's own whisper variant (else from `whisperize`, or no whisper)."""
    return prosody.style == "whisper" and persona.whisper_variant is not None


def process_engine_audio(wav_file: str, persona: Persona, prosody: Prosody, seed: int = 0) -> np.ndarray:
    """The engine's wav after the persona's and prosody's transforms, at 22,050 Hz, before trimming.

    A noise-excited whisper replaces `wav_file`'s content, so the file then holds what sox was given.
    Only the effects of `sox_time_effects` move time.
    """
    if prosody.style == "whisper" and persona.whisper_variant is None:
        audio, rate = sf.read(wav_file, dtype="float32")
        sf.write(wav_file, whisperize(audio, rate, seed), rate, subtype="FLOAT")
    return _apply_sox(wav_file, _sox_effects(persona, prosody))


def trim_bounds(audio: np.ndarray) -> tuple[int, int]:
    """`(first, stop)`: the samples a turn keeps, its active part with 0.15 s of margin on each side."""
    start, end = active_bounds(audio)
    margin = int(TRIM_MARGIN_S * SAMPLING_RATE)
    return max(0, start - margin), min(audio.size, end + margin)


def render_turn(
    text: str, persona: Persona, prosody: Prosody, workdir: str | None = None, seed: int = 0
) -> tuple[np.ndarray, str]:
    """One utterance at 22,050 Hz mono float32, trimmed to 0.15 s of margin and set to its level.

    Args:
        text: raw text in the persona's language (digits and all; see `engine_text`).
        persona, prosody: who speaks and how.
        workdir: scratch folder (a temporary one by default).
        seed: seeds the whisper noise; everything else is deterministic.

    Returns:
        `(audio, engine_text)`: float32 samples in [-1, 1] and the string the engine was given.
    """
    spoken = engine_text(text, persona.language)
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        wav_file = _synthesize(spoken, persona, uses_engine_whisper(persona, prosody), scratch)
        audio = process_engine_audio(wav_file, persona, prosody, seed)
    if not np.any(audio):
        raise RuntimeError(f"{persona.engine} produced silence for {spoken!r}.")
    first, stop = trim_bounds(audio)
    return set_level(audio[first:stop], prosody.gain_db), spoken


def gap_samples(gap_s: float) -> int:
    """Length of the silence `concatenate_turns` puts between two turns."""
    return int(gap_s * SAMPLING_RATE)


def concatenate_turns(turns: list[np.ndarray], gaps_s: list[float]) -> np.ndarray:
    """Join turns with `gaps_s[i]` seconds of silence after turn i (len(gaps_s) == len(turns) - 1)."""
    pieces: list[np.ndarray] = []
    for index, turn in enumerate(turns):
        pieces.append(turn)
        if index < len(gaps_s):
            pieces.append(np.zeros(gap_samples(gaps_s[index]), dtype=np.float32))
    return np.concatenate(pieces)


def persona_by_name(name: str) -> Persona:
    """The persona called `name` (jobs store names, not objects, so their render hash is plain JSON)."""
    for persona in ENGLISH_PERSONAS + CHINESE_PERSONAS:
        if persona.name == name:
            return persona
    raise KeyError(f"No persona named {name!r}.")
