"""The evaluation run: calibrate on ground truth (once), generate every case, measure, write the reports.

Steps of `run_evaluation`:

1. read and validate the case file (before anything slow, so a typo fails in a second);
2. get a `Calibration`: load `--calibration` when it exists and matches the ground truth; otherwise fit it on
   the calibration split of `--ground_truth`, score the held-out split (ceilings, reference WER and MCD)
   and save it; with neither, use the uncalibrated textbook rules;
3. load the pipeline (`tiny-random` builds the tiny test pipeline in code) and warm it up with one untimed
   single-step call;
4. for each case: generate with a per-case seed, write `wavs/<id>.wav`, measure, judge, transcribe (English)
   or compute MCD against espeak-ng (Mandarin speech);
5. write `cases.jsonl`, `summary.json` and `summary.md`.

Per-case seeds are `seed` combined with the case id, so a case sounds the same whatever its position in the
file and whatever `--limit` is.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from ..audio.io import load_audio, write_wav
from .analysis import ClipAnalyzer, fit_calibration, judge
from .asr import WhisperTranscriber, WordErrors, word_errors
from .cases import (
    UNMEASURED_ATTRIBUTES,
    EvaluationCase,
    GroundTruthItem,
    fingerprint,
    load_cases,
    load_ground_truth,
    split_ground_truth,
)
from .classifiers import Calibration
from .mcd import mel_cepstral_distortion, render_espeak_pinyin
from .report import (
    summarize_rtf,
    summarize_values,
    summarize_verdicts,
    summarize_wer,
    write_cases,
    write_summary,
)

logger = logging.getLogger(__name__)

TINY_RANDOM = "tiny-random"


@dataclass
class EvaluationSettings:
    """What to evaluate and how; mirrors the command-line options of `python -m instructaudio_diffusers.evaluation`."""

    model: str
    cases: str
    out: str
    ground_truth: str | None = None
    calibration: str | None = None
    steps: int = 32
    guidance: float = 2.0
    seed: int = 0
    limit: int | None = None
    ground_truth_limit: int | None = None
    asr: bool = True
    whisper_compute_type: str = "int8"


def case_seed(seed: int, case_id: str) -> int:
    """Seed of one case: depends on the run seed and the case id only."""
    return (seed * 1_000_003 + zlib.crc32(case_id.encode("utf-8"))) % 2**31


def load_pipeline(model: str) -> Any:
    """`InstructAudioPipeline` from a folder or Hub id, or the tiny random test pipeline for `tiny-random`."""
    from ..pipelines import InstructAudioPipeline

    if model == TINY_RANDOM:
        from ..testing_utils import get_dummy_components

        pipe = InstructAudioPipeline(**get_dummy_components())
    else:
        pipe = InstructAudioPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wants_asr(task: str, language: str) -> bool:
    return language == "en" and task in ("speech", "dialogue")


class Measurer:
    """Shared measuring tools for one run: the clip analyzer and, on first need, Whisper."""

    def __init__(self, asr: bool, compute_type: str) -> None:
        self.analyzer = ClipAnalyzer()
        self.asr = asr
        self.compute_type = compute_type
        self._transcriber: WhisperTranscriber | None = None

    @property
    def transcriber(self) -> WhisperTranscriber:
        if self._transcriber is None:
            self._transcriber = WhisperTranscriber(compute_type=self.compute_type)
        return self._transcriber

    def load_asr(self) -> None:
        """Load Whisper now: a missing model should stop the run before generation, not fail every case."""
        _ = self.transcriber

    def transcribe(self, audio: np.ndarray, sampling_rate: int, text: str) -> dict[str, Any]:
        """Whisper transcript of a clip and its word errors against `text`."""
        hypothesis = self.transcriber.transcribe(audio, sampling_rate)
        errors = word_errors(text, hypothesis)
        return {
            "hypothesis": hypothesis,
            "errors": errors.errors,
            "reference_words": errors.reference_words,
            "wer": errors.wer,
        }

    @staticmethod
    def mcd(audio: np.ndarray, sampling_rate: int, text: str, gender: str | None) -> float:
        reference, reference_sr = render_espeak_pinyin(text, gender)
        return mel_cepstral_distortion(reference, reference_sr, audio, sampling_rate)


# ------------------------------------------------------------------------------------------- calibration
def _measure_items(
    items: list[GroundTruthItem], measurer: Measurer, label: str, references: bool = False
) -> list[tuple[GroundTruthItem, dict[str, Any], dict[str, Any]]]:
    """`(item, features, reference)` per clip; with `references`, the reference dict holds the clip's
    Whisper result (`asr`, English speech/dialogue) or its MCD against espeak-ng (`mcd_db`, Mandarin speech)."""
    measured = []
    for index, item in enumerate(items, start=1):
        audio, sampling_rate = load_audio(item.path)
        features = measurer.analyzer.measure(audio, sampling_rate, item.task, item.text)
        reference: dict[str, Any] = {}
        if references and measurer.asr and wants_asr(item.task, item.language):
            reference["asr"] = measurer.transcribe(audio, sampling_rate, item.text)
        elif references and item.task == "speech" and item.language == "zh":
            try:
                reference["mcd_db"] = measurer.mcd(
                    audio, sampling_rate, item.text, item.attributes.get("gender")
                )
            except ValueError as err:  # e.g. a Chinese text with Latin letters: no pinyin reference
                logger.warning("no MCD reference for %s: %s", item.path, err)
        measured.append((item, features, reference))
        if index % 50 == 0 or index == len(items):
            logger.info("ground truth (%s): measured %d/%d clips", label, index, len(items))
    return measured


def _word_errors(rows: list[dict[str, Any]]) -> list[WordErrors]:
    return [WordErrors(row["asr"]["errors"], row["asr"]["reference_words"]) for row in rows if "asr" in row]


def calibrate_on_ground_truth(folder: str, measurer: Measurer, limit: int | None = None) -> Calibration:
    """Fit the classifiers on the calibration split and score everything on the held-out split."""
    items = load_ground_truth(folder)
    calibration_items, held_out = split_ground_truth(items)
    if limit is not None:
        calibration_items, held_out = calibration_items[:limit], held_out[:limit]
    source = {
        "kind": "ground_truth",
        "path": os.path.abspath(folder),
        "fingerprint": fingerprint(folder),
        "num_calibration": len(calibration_items),
        "num_held_out": len(held_out),
    }
    fitting = _measure_items(calibration_items, measurer, "calibration split")
    calibration = fit_calibration([(item, features) for item, features, _ in fitting], source)
    held_out_measured = _measure_items(held_out, measurer, "held-out split", references=True)
    calibration.ceiling = summarize_verdicts(
        judge(features, item.attributes, calibration, item.language, item.task)
        for item, features, _ in held_out_measured
    )
    references = [reference for _, _, reference in held_out_measured]
    calibration.reference = {
        "wer": summarize_wer(_word_errors(references)) if measurer.asr else None,
        "mcd": summarize_values([reference["mcd_db"] for reference in references if "mcd_db" in reference]),
    }
    return calibration


def prepare_calibration(settings: EvaluationSettings, measurer: Measurer) -> Calibration:
    """Load, fit (and save) or default the calibration, as described in step 2 of the module docstring."""
    path = settings.calibration or (
        os.path.join(settings.out, "calibration.json") if settings.ground_truth else None
    )
    if path and os.path.isfile(path):
        calibration = Calibration.load(path)
        fitted_on = calibration.source.get("fingerprint")
        if not settings.ground_truth or fitted_on == fingerprint(settings.ground_truth):
            logger.info("calibration loaded from %s", path)
            return calibration
        logger.info("calibration %s was fit on another ground truth; refitting", path)
    if not settings.ground_truth:
        if settings.calibration:
            raise FileNotFoundError(
                f"no calibration file at {settings.calibration}; give --ground_truth to fit one."
            )
        return Calibration.uncalibrated()
    calibration = calibrate_on_ground_truth(settings.ground_truth, measurer, settings.ground_truth_limit)
    calibration.save(path)
    logger.info("calibration fit on %s and saved to %s", settings.ground_truth, path)
    return calibration


# ------------------------------------------------------------------------------------------- generation
def evaluate_case(
    case: EvaluationCase,
    pipe: Any,
    settings: EvaluationSettings,
    measurer: Measurer,
    calibration: Calibration,
) -> dict[str, Any]:
    """Generate, save and measure one case; returns its `cases.jsonl` row (with `error` if it failed)."""
    import torch

    seed = case_seed(settings.seed, case.id)
    row: dict[str, Any] = {**case.to_dict(), "seed": seed}
    length = _audio_length(case, pipe, settings)
    if length != case.audio_length_in_s:
        row["audio_length_in_s_used"] = length
    try:
        started = time.perf_counter()
        output = pipe(
            instruction=case.instruction,
            text=case.text,
            audio_length_in_s=length,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=torch.Generator(device="cpu").manual_seed(seed),
        )
        generation_s = time.perf_counter() - started
        audio, sampling_rate = np.asarray(output.audios[0], dtype=np.float32).reshape(-1), pipe.sampling_rate
        wav_path = os.path.join("wavs", f"{case.id}.wav")
        write_wav(os.path.join(settings.out, wav_path), audio, sampling_rate)
        audio_s = audio.size / sampling_rate
        row.update(wav=wav_path, audio_s=audio_s, generation_s=generation_s, rtf=generation_s / audio_s)
        features = measurer.analyzer.measure(audio, sampling_rate, case.task, case.text)
        row["features"] = features
        row["attributes"] = judge(features, case.expect, calibration, case.language, case.task)
        if measurer.asr and wants_asr(case.task, case.language):
            row["asr"] = measurer.transcribe(audio, sampling_rate, case.text)
        if case.task == "speech" and case.language == "zh":
            # A text espeak-ng's pinyin voice cannot read (Latin letters) has no reference: skip, not fail.
            try:
                row["mcd_db"] = measurer.mcd(audio, sampling_rate, case.text, case.expect.get("gender"))
            except ValueError as err:
                row["mcd_skipped"] = str(err)
    except ImportError:
        raise  # a missing dependency is the environment's fault, not the case's: stop with its install hint
    except Exception as err:  # one broken case must not lose the rest of a long run; it is reported
        logger.exception("case %s failed", case.id)
        row["error"] = f"{type(err).__name__}: {err}"
    return row


def _audio_length(case: EvaluationCase, pipe: Any, settings: EvaluationSettings) -> float | None:
    """The case's length, shortened to the model's limit for the self-test model only (it places ~2 s), so
    that real case files can exercise the harness; a trained model gets exactly what the case asks for."""
    length = case.audio_length_in_s
    if settings.model == TINY_RANDOM and length is not None:
        return min(length, pipe.max_audio_length_in_s)
    return length


def _warm_up(pipe: Any, case: EvaluationCase, audio_length_in_s: float | None) -> None:
    """One untimed single-step call, so one-off costs (lazy imports, allocator growth, kernel selection)
    are not charged to the first case's real-time factor."""
    import torch

    try:
        pipe(
            instruction=case.instruction,
            text=case.text,
            audio_length_in_s=audio_length_in_s,
            num_inference_steps=1,
            generator=torch.Generator(device="cpu").manual_seed(0),
        )
    except Exception as err:  # the case itself will fail the same way and be reported there
        logger.warning("warm-up call failed (%s); timings of the first case include one-off costs", err)


def run_evaluation(settings: EvaluationSettings) -> dict[str, Any]:
    """Run the whole evaluation (see the module docstring) and return the summary it wrote."""
    cases = load_cases(settings.cases)[: settings.limit]
    os.makedirs(os.path.join(settings.out, "wavs"), exist_ok=True)
    measurer = Measurer(settings.asr, settings.whisper_compute_type)
    if settings.asr and any(wants_asr(case.task, case.language) for case in cases):
        measurer.load_asr()
    calibration = prepare_calibration(settings, measurer)

    started = time.perf_counter()
    pipe = load_pipeline(settings.model)
    model_load_s = time.perf_counter() - started
    _warm_up(pipe, cases[0], _audio_length(cases[0], pipe, settings))
    rows = []
    for index, case in enumerate(cases, start=1):
        rows.append(evaluate_case(case, pipe, settings, measurer, calibration))
        logger.info(
            "case %d/%d %s: %s", index, len(cases), case.id, "failed" if "error" in rows[-1] else "done"
        )
    write_cases(os.path.join(settings.out, "cases.jsonl"), rows)

    done = [row for row in rows if "error" not in row]
    reference = calibration.reference or {}
    summary = {
        "header": {
            "model": settings.model,
            "self_test": settings.model == TINY_RANDOM,
            "package_version": __version__,
            "cases_file": os.path.abspath(settings.cases),
            "num_cases": len(rows),
            "num_failed": len(rows) - len(done),
            "steps": settings.steps,
            "guidance": settings.guidance,
            "seed": settings.seed,
            "sampling_rate": pipe.sampling_rate,
            "calibration": calibration.source,
        },
        "generated": summarize_verdicts(row["attributes"] for row in done),
        "ground_truth": calibration.ceiling or None,
        "wer": {
            "generated": summarize_wer(_word_errors(done)),
            "ground_truth": reference.get("wer"),
        },
        "mcd": {
            "generated": summarize_values([row["mcd_db"] for row in done if "mcd_db" in row]),
            "ground_truth": reference.get("mcd"),
        },
        "rtf": summarize_rtf(done, model_load_s),
        "unmeasured": dict(
            Counter(name for case in cases for name in case.expect if name in UNMEASURED_ATTRIBUTES)
        ),
        "failures": [{"id": row["id"], "error": row["error"]} for row in rows if "error" in row],
    }
    write_summary(settings.out, summary)
    return summary
