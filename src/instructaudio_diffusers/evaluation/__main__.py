"""Command line: `python -m instructaudio_diffusers.evaluation --model PATH --cases CASES.jsonl --out DIR`.

Examples:

    # the trained demo model, calibrated on the corpus' held-out ground truth (fit once, then reused)
    python -m instructaudio_diffusers.evaluation --model ./instructaudio-demo --cases held_out_cases.jsonl \
        --ground_truth ./corpus/held_out --calibration ./eval/calibration.json --out ./eval/run1

    # contrast pairs with their ground truth (the main measure of control); --quick for a ~5-minute subset
    python -m instructaudio_diffusers.evaluation --model ./instructaudio-demo --cases evaluation/demo_contrast_cases.jsonl \
        --references ./contrast_corpus --ground_truth ./corpus/held_out --calibration ./eval/calibration.json \
        --out ./eval/contrast [--quick]

    # harness self-test without any trained model (CI): a tiny random pipeline, no calibration
    python -m instructaudio_diffusers.evaluation --model tiny-random --cases tests/cases.jsonl --out /tmp/eval --steps 2

Exit status: 0 when every case was generated and measured, 1 when some case failed (its error is in
`cases.jsonl` and `summary.md`), 2 for unusable arguments or files.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .cases import CaseFileError
from .evaluate import TINY_RANDOM, EvaluationSettings, run_evaluation


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m instructaudio_diffusers.evaluation",
        description="Generate every case of a case file and measure how well the audio follows its instruction.",
    )
    parser.add_argument(
        "--model", required=True, help=f"pipeline folder or Hub id, or '{TINY_RANDOM}' (self-test)"
    )
    parser.add_argument(
        "--cases", required=True, help="case file (JSON lines; see instructaudio_diffusers.evaluation.cases)"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder: summary.json, summary.md, model_card_evaluation.md, cases.jsonl, pairs.jsonl, wavs/",
    )
    parser.add_argument(
        "--ground_truth",
        help="ground-truth folder with metadata.jsonl: calibration, ceilings, reference WER/MCD",
    )
    parser.add_argument(
        "--calibration",
        help="calibration JSON: loaded when it exists (and matches --ground_truth), else fit and written here "
        "(default with --ground_truth: OUT/calibration.json)",
    )
    parser.add_argument(
        "--references",
        help="folder the cases' `reference_audio` paths are relative to: the ground-truth column on the same cases",
    )
    parser.add_argument(
        "--reference_cache",
        help="JSON lines file of reference measurements, reused across runs "
        "(default: reference_measurements.jsonl next to the calibration file, else in OUT)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fixed subset: the first 4 pairs of each contrast attribute and 20 unpaired cases per task",
    )
    parser.add_argument(
        "--pair_length",
        choices=("case", "predicted"),
        default="case",
        help="length of contrast sides: the case's (one length per pair, the default) or none, so the model's "
        "duration predictor sets each side's length (speaking rate then shows in the length too)",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=EvaluationSettings.steps,
        help=f"denoising steps (default {EvaluationSettings.steps}, the pipeline's)",
    )
    parser.add_argument(
        "--guidance", type=float, default=2.0, help="classifier-free guidance scale (default 2.0)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="run seed; each case's seed also depends on its id"
    )
    parser.add_argument("--limit", type=_positive_int, help="evaluate only the first N cases")
    parser.add_argument(
        "--ground_truth_limit", type=_positive_int, help="use at most N clips of each ground-truth split"
    )
    parser.add_argument(
        "--skip_asr", action="store_true", help="no Whisper WER/CER (e.g. without the weight wheels)"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the cases OUT/cases.partial.jsonl already finished with the same model and sampling",
    )
    parser.add_argument(
        "--whisper_compute_type", default="int8", choices=("int8", "float32"), help="CTranslate2 compute type"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every clip's duration at INFO
    settings = EvaluationSettings(
        model=args.model,
        cases=args.cases,
        out=args.out,
        ground_truth=args.ground_truth,
        calibration=args.calibration,
        references=args.references,
        reference_cache=args.reference_cache,
        quick=args.quick,
        progress=not args.no_progress,
        resume=args.resume,
        pair_length=args.pair_length,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        limit=args.limit,
        ground_truth_limit=args.ground_truth_limit,
        asr=not args.skip_asr,
        whisper_compute_type=args.whisper_compute_type,
    )
    try:
        summary = run_evaluation(settings)
    except (CaseFileError, FileNotFoundError, ImportError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}/summary.md ({summary['header']['num_cases']} cases, {summary['header']['num_failed']} failed)"
    )
    return 1 if summary["header"]["num_failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
