"""The evaluation run: calibrate on ground truth (once), generate every case, measure, write the reports.

Steps of `run_evaluation`:

1. read and validate the case file (before anything slow, so a typo or a broken pair fails in a second),
   take the `--quick` subset and `--limit`, and check that every reference audio exists;
2. get a `Calibration`: load `--calibration` when it exists and matches the ground truth; otherwise fit it on
   the calibration split of `--ground_truth`, score the held-out split (ceilings, reference WER and MCD)
   and save it; with neither, use the uncalibrated textbook rules;
3. measure each case's reference audio (`--references`), from the reference cache where possible: the
   ground-truth column of every measure, on the same cases;
4. load the pipeline (`tiny-random` builds the tiny test pipeline in code) and warm it up with one untimed
   single-step call;
5. for each case (with a progress bar): generate with the case's seed, write `wavs/<id>.wav`, measure
   (`measure.Measurer`) and judge the stated attributes;
6. score the contrast pairs on the generated audio and on the references;
7. write `cases.jsonl`, `pairs.jsonl`, `summary.json`, `summary.md` and `model_card_evaluation.md`.

Each finished case is also appended to `cases.partial.jsonl` as it finishes; `--resume` reuses the rows there
that were made with the same model, steps, guidance, case and seed (and whose wav exists), so a killed long
run only redoes the case in flight; a reused row whose transcripts predate `measure.ASR_VERSION` is
transcribed again from its wav, without generating it again.

Seeds: a case's seed is `seed` combined with its id, or with its pair id for a contrast side, so both sides
of a pair share one seed, and a case sounds the same whatever its position in the file and whatever
`--limit` or `--quick` are.

`--quick`: the first `QUICK_PAIRS_PER_ATTRIBUTE` pairs of every contrast attribute and the first
`QUICK_CASES_PER_TASK` unpaired cases of every task (64 generations of the shipped contrast file).
"""

from __future__ import annotations

import json
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
from ..pipelines.pipeline_instructaudio import DEFAULT_INFERENCE_STEPS
from ..pretrained import TINY_RANDOM
from ..pretrained import load_pipeline as load_named_pipeline
from .analysis import fit_calibration, judge
from .asr import word_errors
from .cases import (
    UNMEASURED_ATTRIBUTES,
    EvaluationCase,
    GroundTruthItem,
    fingerprint,
    load_cases,
    load_ground_truth,
    resolve_references,
    split_ground_truth,
)
from .classifiers import Calibration
from .contrast import build_pairs, judge_pair
from .measure import Measurer, ReferenceCache, wants_english_asr, wants_mandarin_asr
from .report import (
    build_summary,
    summarize_rates,
    summarize_values,
    summarize_verdicts,
    write_jsonl,
    write_summary,
)

logger = logging.getLogger(__name__)


QUICK_PAIRS_PER_ATTRIBUTE = 4
QUICK_CASES_PER_TASK = 20
PARTIAL_CASES_FILE = "cases.partial.jsonl"


@dataclass
class EvaluationSettings:
    """What to evaluate and how; mirrors the command-line options of `python -m instructaudio_diffusers.evaluation`."""

    model: str
    cases: str
    out: str
    ground_truth: str | None = None
    calibration: str | None = None
    references: str | None = None
    reference_cache: str | None = None
    steps: int = DEFAULT_INFERENCE_STEPS
    guidance: float = 2.0
    seed: int = 0
    limit: int | None = None
    quick: bool = False
    ground_truth_limit: int | None = None
    asr: bool = True
    whisper_compute_type: str = "int8"
    progress: bool = True
    resume: bool = False
    pair_length: str = (
        "case"  # "predicted": contrast sides get no length; the model's duration predictor decides
    )


def case_seed(seed: int, case_id: str) -> int:
    """Seed of one case: depends on the run seed and the case id only."""
    return (seed * 1_000_003 + zlib.crc32(case_id.encode("utf-8"))) % 2**31


def load_pipeline(model: str) -> Any:
    """`InstructAudioPipeline` from a folder or Hub id, or the tiny random test pipeline for `tiny-random`."""
    pipe, _ = load_named_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def select_quick(cases: list[EvaluationCase]) -> list[EvaluationCase]:
    """The `--quick` subset (module docstring), in file order."""
    pairs_seen: dict[str, list[str]] = {}
    per_task: Counter[str] = Counter()
    chosen = []
    for case in cases:
        if case.contrast:
            pairs = pairs_seen.setdefault(case.contrast["attribute"], [])
            if case.contrast["pair"] not in pairs and len(pairs) < QUICK_PAIRS_PER_ATTRIBUTE:
                pairs.append(case.contrast["pair"])
            if case.contrast["pair"] in pairs:
                chosen.append(case)
        elif per_task[case.task] < QUICK_CASES_PER_TASK:
            per_task[case.task] += 1
            chosen.append(case)
    return chosen


# ------------------------------------------------------------------------------------------- calibration
def _measure_items(
    items: list[GroundTruthItem], measurer: Measurer, label: str, references: bool = False
) -> list[tuple[GroundTruthItem, dict[str, Any], dict[str, Any]]]:
    """`(item, features, reference)` per clip; with `references`, the reference dict holds the clip's
    Whisper tiny.en result (`asr`, English speech/dialogue) or its MCD against espeak-ng (`mcd_db`, Mandarin
    speech): the held-out ceilings for case files without reference audio."""
    measured = []
    for index, item in enumerate(items, start=1):
        audio, sampling_rate = load_audio(item.path)
        features = measurer.analyzer.measure(audio, sampling_rate, item.task, item.text)
        reference: dict[str, Any] = {}
        if references and measurer.asr and wants_english_asr(item.task, item.language):
            hypothesis = measurer.transcriber("tiny.en", "en").transcribe(audio, sampling_rate)
            reference["asr"] = {"tiny.en": {"hypothesis": hypothesis, **_errors(item.text, hypothesis)}}
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


def _errors(text: str, hypothesis: str) -> dict[str, Any]:
    errors = word_errors(text, hypothesis)
    return {**errors.to_dict(), "wer": errors.wer}


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
        "wer": summarize_rates([ref["asr"]["tiny.en"] for ref in references if "asr" in ref])
        if measurer.asr
        else None,
        "mcd": summarize_values([ref["mcd_db"] for ref in references if "mcd_db" in ref]),
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


# ------------------------------------------------------------------------------------------- references
def measure_references(
    cases: list[EvaluationCase],
    references: dict[str, str],
    measurer: Measurer,
    cache: ReferenceCache,
    progress: bool,
    failures: list[dict[str, str]],
) -> dict[str, dict[str, Any]]:
    """`{case id: measurement}` of every case's reference audio, taken from `cache` where it is there; a
    reference that cannot be measured is appended to `failures` and left out."""
    from tqdm.auto import tqdm

    measured = {}
    for case in tqdm(cases, desc="references", unit="clip", disable=not progress, dynamic_ncols=True):
        if case.id not in references:
            continue
        gender = case.expect.get("gender")
        key = cache.key(references[case.id], case.task, case.language, case.text, gender)
        entry = cache.get(key)
        if entry is not None and measurer.needs_asr_refresh(entry):
            audio, sampling_rate = load_audio(references[case.id])
            measurer.refresh_asr(entry, audio, sampling_rate, case.task, case.language, case.text)
            cache.put(key, entry)
        if entry is None:
            audio, sampling_rate = load_audio(references[case.id])
            try:
                entry = measurer.measure(audio, sampling_rate, case.task, case.language, case.text, gender)
            except ImportError:
                raise
            except Exception as err:  # reported in the summary's failures; the generated side is still scored
                logger.exception("reference of case %s could not be measured", case.id)
                failures.append({"id": case.id, "error": f"reference: {type(err).__name__}: {err}"})
                continue
            cache.put(key, entry)
        measured[case.id] = entry
    return measured


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

    seed = case_seed(settings.seed, case.seed_key)
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
        row.update(
            measurer.measure(
                audio, sampling_rate, case.task, case.language, case.text, case.expect.get("gender")
            )
        )
        row["attributes"] = judge(row["features"], case.expect, calibration, case.language, case.task)
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
    if case.contrast and settings.pair_length == "predicted":
        return None
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


def _finished_rows(
    path: str, run_key: dict[str, Any], settings: EvaluationSettings
) -> dict[str, dict[str, Any]]:
    """Rows of `path` (`PARTIAL_CASES_FILE`) made with the same model and sampling, whose wav still exists
    and that did not fail; a line cut short by a killed run is skipped."""
    finished = {}
    if not os.path.isfile(path):
        return finished
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            row = entry.get("row", {})
            if (
                entry.get("run") == run_key
                and "error" not in row
                and os.path.isfile(os.path.join(settings.out, row.get("wav", "")))
            ):
                finished[row["id"]] = row
    return finished


def _same_case(row: dict[str, Any], case: EvaluationCase, settings: EvaluationSettings) -> bool:
    """Whether a finished row was generated from exactly this case (text, instruction, length and seed)."""
    return row.get("seed") == case_seed(settings.seed, case.seed_key) and all(
        row.get(name) == value for name, value in case.to_dict().items()
    )


def _judge_pairs(
    cases: list[EvaluationCase], features: dict[str, dict[str, Any]], calibration: Calibration
) -> list[dict[str, Any]]:
    """Pair verdicts for the pairs whose two sides both have features (a failed side drops its pair)."""
    return [
        judge_pair(pair, features[pair.positive.id], features[pair.negative.id], calibration)
        for pair in build_pairs(cases)
        if pair.positive.id in features and pair.negative.id in features
    ]


def run_evaluation(settings: EvaluationSettings) -> dict[str, Any]:
    """Run the whole evaluation (see the module docstring) and return the summary it wrote."""
    from tqdm.auto import tqdm

    started_run = time.perf_counter()
    cases = load_cases(settings.cases)
    cases = (select_quick(cases) if settings.quick else cases)[: settings.limit]
    references = resolve_references(cases, settings.references, settings.cases) if settings.references else {}
    os.makedirs(os.path.join(settings.out, "wavs"), exist_ok=True)
    measurer = Measurer(settings.asr, settings.whisper_compute_type)
    measurer.load_asr(
        english=any(wants_english_asr(case.task, case.language) for case in cases),
        mandarin=any(wants_mandarin_asr(case.task, case.language) for case in cases),
    )
    calibration = prepare_calibration(settings, measurer)
    cache_path = settings.reference_cache or os.path.join(
        os.path.dirname(os.path.abspath(settings.calibration or os.path.join(settings.out, "x"))),
        "reference_measurements.jsonl",
    )
    reference_failures: list[dict[str, str]] = []
    reference_measured = measure_references(
        cases,
        references,
        measurer,
        ReferenceCache(cache_path, settings.asr),
        settings.progress,
        reference_failures,
    )
    for case in cases:
        if case.id in reference_measured:
            entry = reference_measured[case.id]
            entry["attributes"] = judge(entry["features"], case.expect, calibration, case.language, case.task)

    started = time.perf_counter()
    pipe = load_pipeline(settings.model)
    model_load_s = time.perf_counter() - started
    _warm_up(pipe, cases[0], _audio_length(cases[0], pipe, settings))
    run_key = {"model": settings.model, "steps": settings.steps, "guidance": settings.guidance}
    if settings.pair_length != "case":
        run_key["pair_length"] = settings.pair_length
    partial_path = os.path.join(settings.out, PARTIAL_CASES_FILE)
    finished = _finished_rows(partial_path, run_key, settings) if settings.resume else {}
    rows = []
    bar = tqdm(cases, desc="cases", unit="case", disable=not settings.progress, dynamic_ncols=True)
    with open(partial_path, "a" if settings.resume else "w", encoding="utf-8") as partial:
        for case in bar:
            row = finished.get(case.id)
            if row is not None and _same_case(row, case, settings) and measurer.needs_asr_refresh(row):
                audio, sampling_rate = load_audio(os.path.join(settings.out, row["wav"]))
                measurer.refresh_asr(row, audio, sampling_rate, case.task, case.language, case.text)
                partial.write(json.dumps({"run": run_key, "row": row}, ensure_ascii=False) + "\n")
            elif row is None or not _same_case(row, case, settings):
                row = evaluate_case(case, pipe, settings, measurer, calibration)
                # One line per finished case: a killed run resumes (--resume) without redoing it.
                partial.write(json.dumps({"run": run_key, "row": row}, ensure_ascii=False) + "\n")
                partial.flush()
            rows.append(row)
            if case.id in reference_measured:
                rows[-1]["reference"] = reference_measured[case.id]
            bar.set_postfix(failed=sum("error" in row for row in rows))
    done = [row for row in rows if "error" not in row]
    rows_by_id = {row["id"]: row for row in rows}
    pairs = {
        "generated": _judge_pairs(cases, {row["id"]: row["features"] for row in done}, calibration),
        "ground_truth": _judge_pairs(
            cases, {key: value["features"] for key, value in reference_measured.items()}, calibration
        ),
    }
    write_jsonl(os.path.join(settings.out, "cases.jsonl"), rows)
    write_jsonl(
        os.path.join(settings.out, "pairs.jsonl"),
        [{"audio": audio, **result} for audio, results in pairs.items() for result in results],
    )
    header = {
        "model": settings.model,
        "self_test": settings.model == TINY_RANDOM,
        "package_version": __version__,
        "cases_file": os.path.abspath(settings.cases),
        "quick": settings.quick,
        "pair_length": settings.pair_length,
        "references": os.path.abspath(settings.references) if settings.references else None,
        "num_cases": len(rows),
        "num_failed": len(rows) - len(done),
        "steps": settings.steps,
        "guidance": settings.guidance,
        "seed": settings.seed,
        "sampling_rate": pipe.sampling_rate,
        "calibration": calibration.source,
        "model_load_s": model_load_s,
        "wall_s": time.perf_counter() - started_run,
        # Rows taken from an earlier (killed) run: their generation time is in `rtf`, not in `wall_s`.
        "resumed_cases": sum(1 for case in cases if finished.get(case.id) is rows_by_id.get(case.id)),
    }
    unmeasured = dict(
        Counter(name for case in cases for name in case.expect if name in UNMEASURED_ATTRIBUTES)
    )
    summary = build_summary(header, rows, pairs, calibration, unmeasured)
    summary["failures"] += reference_failures
    write_summary(settings.out, summary)
    return summary
