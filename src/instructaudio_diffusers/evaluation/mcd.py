"""Mandarin spectral distance: mel-cepstral distortion (MCD) with DTW against espeak-ng (a secondary measure;
`mandarin` has the CER that says whether the words can be understood).

A Chinese clip is compared with the espeak-ng rendering of the same text (docs/design.md §5: `espeak-ng -v
cmn-latn-pinyin` fed the processor's surface pinyin, exactly how the corpus makes its Mandarin). Low MCD
means the clip follows the reference's phone sequence and spectral envelopes; it is a sanity measure, not
one of intelligibility or naturalness.

Mel-cepstrum: WORLD's spectral envelope (pyworld DIO + StoneMask + CheapTrick at 16 kHz, 5 ms frames), so
the harmonics of F0 do not enter the distance, converted by SPTK's `sp2mc` (pysptk) with the standard
first-order all-pass frequency warping, alpha = 0.41 at 16 kHz (`pysptk.util.mcepalpha`, the value that
best approximates the mel scale), order 24. This is the mel-cepstrum published MCD figures use (WORLD or
STRAIGHT envelope -> SPTK mcep), so the dB values compare with them, which the earlier resampling of the
envelope onto a mel grid did not: it also took its coefficients from the log *amplitude* with a
`c0 + 2 sum c_n cos` convention, which halves every c_n against SPTK's `c0 + sum c_n cos` and so halved the
dB (the demo corpus' Mandarin ground truth read 5.6 dB there, 11.6 dB here). Coefficients 1..24 are kept (c0, the level, is excluded as usual). Leading
and trailing silence is trimmed first.

MCD over the DTW path (librosa's `sequence.dtw`, Euclidean cost), averaged per aligned frame pair:
`10 / ln(10) * sqrt(2 * sum_n (c_n - c'_n)^2)` dB.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from ..processing.chinese import ChineseG2P
from ..processing.chinese_normalizer import normalize_chinese
from ._optional import import_librosa, import_pysptk, import_pyworld
from .prosody import ANALYSIS_SAMPLING_RATE, FRAME_S, active_mask, frame_levels_db, to_analysis_rate

MCD_ORDER = 24
MCD_FRAME_PERIOD_MS = 5.0
ESPEAK_MANDARIN_VOICE = "cmn-latn-pinyin"
#: espeak-ng variants used for the reference, matching the gender the case asks for (the corpus uses them too).
REFERENCE_VARIANTS = {"female": "f2", "male": "m3"}
_MARKUP = re.compile(r"\[[^\]]*\]|\{[^}]*\}")


@functools.lru_cache(maxsize=1)
def _chinese_g2p() -> ChineseG2P:
    """One G2P per process: building its jieba tokenizer costs ~0.6 s."""
    return ChineseG2P()


def pinyin_engine_text(text: str) -> str:
    """What espeak-ng's `cmn-latn-pinyin` voice should read for a Chinese text.

    The processor's own reading: `normalize_chinese` (numbers, dates, punctuation to `, . ? !`), then the
    surface-tone pinyin of each phrase (word segmentation, polyphones, tone sandhi). Each word's syllables
    are joined ("yin2hang2") and words separated by spaces, with the phrase's pause mark glued to its last
    word; neutral tone is 5. espeak-ng's `cmn` voice would misread Han characters (docs/design.md §5).

    Raises:
        ValueError: for text with Latin letters (no English is rendered here) or nothing readable.
    """
    normalized = "".join(normalize_chinese(" ".join(_MARKUP.sub(" ", text).split())).split())
    phrases: list[str] = []
    for phrase, pause in re.findall(r"([^,.?!]*)([,.?!]?)", normalized):
        if phrase:
            words = _chinese_g2p().pinyin(phrase)
            phrases.append(" ".join("".join(word) for word in words) + pause)
        elif pause and phrases:
            phrases[-1] += pause
    if not phrases:
        raise ValueError(f"nothing readable in {text!r}.")
    return " ".join(phrases)


def render_espeak_pinyin(text: str, gender: str | None = None) -> tuple[np.ndarray, int]:
    """espeak-ng rendering of a Chinese text, `(float32 audio, sampling_rate)`.

    Args:
        text: Chinese text (tags and overrides are ignored).
        gender: `female`/`male` picks the matching espeak-ng variant; None uses the voice's default.

    Raises:
        FileNotFoundError: espeak-ng is not installed. RuntimeError: espeak-ng failed.
    """
    voice = ESPEAK_MANDARIN_VOICE + (f"+{REFERENCE_VARIANTS[gender]}" if gender in REFERENCE_VARIANTS else "")
    with tempfile.TemporaryDirectory() as scratch:
        text_file, wav_file = os.path.join(scratch, "text.txt"), os.path.join(scratch, "reference.wav")
        with open(text_file, "w", encoding="utf-8") as handle:
            handle.write(pinyin_engine_text(text) + "\n")
        try:
            result = subprocess.run(
                ["espeak-ng", "-v", voice, "-f", text_file, "-w", wav_file], capture_output=True, check=False
            )
        except FileNotFoundError as err:
            raise FileNotFoundError(
                "Chinese MCD needs the `espeak-ng` program (apt install espeak-ng)."
            ) from err
        if result.returncode != 0:
            raise RuntimeError(
                f"espeak-ng failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )
        audio, sampling_rate = sf.read(wav_file, dtype="float32")
    return audio, sampling_rate


def _trim_silence(audio: np.ndarray) -> np.ndarray:
    """Cut leading and trailing inactive 10 ms frames (see `prosody.active_mask`)."""
    active = np.flatnonzero(active_mask(frame_levels_db(audio)))
    if active.size == 0:
        return audio
    hop = int(round(FRAME_S * ANALYSIS_SAMPLING_RATE))
    return audio[active[0] * hop : (active[-1] + 1) * hop]


def mel_cepstrum(audio: np.ndarray, sampling_rate: int, order: int = MCD_ORDER) -> np.ndarray:
    """Mel-cepstral coefficients 1..`order` of each 5 ms frame, shape `(num_frames, order)`."""
    pyworld, pysptk = import_pyworld(), import_pysptk()
    signal = _trim_silence(to_analysis_rate(audio, sampling_rate))
    if signal.size < ANALYSIS_SAMPLING_RATE * 0.05:
        raise ValueError("clip is shorter than 50 ms after trimming silence; no mel-cepstrum.")
    fs = ANALYSIS_SAMPLING_RATE
    signal = np.ascontiguousarray(signal)
    coarse, times = pyworld.dio(signal, fs, frame_period=MCD_FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(signal, coarse, times, fs)
    envelope = pyworld.cheaptrick(signal, f0, times, fs)  # (frames, fft_size // 2 + 1), power
    cepstrum = pysptk.sp2mc(np.maximum(envelope, 1e-20), order=order, alpha=pysptk.util.mcepalpha(fs))
    return cepstrum[:, 1 : order + 1]


def mel_cepstral_distortion(
    reference: np.ndarray, reference_sr: int, test: np.ndarray, test_sr: int, order: int = MCD_ORDER
) -> float:
    """DTW-aligned MCD in dB between two clips (0 for identical clips; the demo corpus' Mandarin clips, other
    espeak-ng variants and sox prosody, measure ~11.6 dB against the default-variant reference)."""
    librosa = import_librosa()
    first, second = mel_cepstrum(reference, reference_sr, order), mel_cepstrum(test, test_sr, order)
    _, path = librosa.sequence.dtw(X=first.T, Y=second.T, metric="euclidean")
    differences = first[path[:, 0]] - second[path[:, 1]]
    per_pair = 10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(differences**2, axis=1))
    return float(np.mean(per_pair))
