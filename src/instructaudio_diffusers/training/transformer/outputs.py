"""What `train_instructaudio.py` produces besides checkpoints: validation audio, the final pipeline with its
model card, and the Hub upload. Validation and the upload run on the main process; `save_final_pipeline` is
called by every process (it waits for all of them, then the main process saves)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..tracking import log_audio, log_image, plot_mel, push_folder_to_hub, write_json

logger = logging.getLogger("train_instructaudio")
#: Folder of the final validation samples, next to the saved pipeline; the model card links to them.
SAMPLES_DIR = "samples"
_HUB_IGNORE = [
    "checkpoint-*", "checkpoint-*/**", "*.partial/**", "logs/**", "validation/**", "prepared_data/**"
]  # fmt: skip


def validation_prompts(args: argparse.Namespace) -> list[tuple[str, str, float | None]]:
    """`(instruction, text, audio_length_in_s or None)` for every validation prompt."""
    lengths = args.validation_audio_length_in_s
    if len(lengths) == 1:
        lengths = lengths * len(args.validation_instructions)
    return [
        (instruction, text, length if length > 0 else None)
        for instruction, text, length in zip(args.validation_instructions, args.validation_texts, lengths)
    ]


@torch.no_grad()
def run_validation(
    accelerator, components: dict[str, Any], model, ema, args: argparse.Namespace, step: int, folder: Path
) -> list[dict[str, Any]]:
    """Generate every validation prompt with the current (EMA, if any) weights; write and log audio + mel.

    Each prompt has its own fixed seed, so successive validations differ only by the weights.

    Returns:
        One `{"instruction", "text", "audio", "mel_image", "seconds"}` record per prompt (paths relative
        to `--output_dir`).
    """
    from instructaudio_diffusers import InstructAudioPipeline, write_wav
    from instructaudio_diffusers.models import vocode

    transformer = accelerator.unwrap_model(model)
    parameters = list(transformer.parameters())
    if ema is not None:
        ema.store(parameters)
        ema.copy_to(parameters)
    was_training = transformer.training
    transformer.eval()
    pipeline = InstructAudioPipeline(**{**components, "transformer": transformer})
    pipeline.set_progress_bar_config(disable=True)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    try:
        for index, (instruction, text, seconds) in enumerate(validation_prompts(args)):
            mel = pipeline(
                instruction=instruction,
                text=text,
                audio_length_in_s=seconds,
                num_inference_steps=args.num_validation_inference_steps,
                guidance_scale=args.validation_guidance_scale,
                generator=torch.Generator().manual_seed(args.seed + index),
                output_type="mel",
            ).audios[0]
            mel = torch.from_numpy(mel).to(pipeline.vocoder.device)
            waveform = vocode(pipeline.vocoder, mel[None])[0].float().cpu()
            audio_path, image_path = folder / f"sample{index}.wav", folder / f"sample{index}_mel.png"
            write_wav(audio_path, waveform, pipeline.sampling_rate)
            image = plot_mel(
                mel,
                pipeline.sampling_rate,
                pipeline.vae.config.hop_length,
                image_path,
                title=f"{instruction[:60]} (step {step})",
            )
            log_audio(accelerator, f"validation/sample{index}", waveform, pipeline.sampling_rate, step)
            log_image(accelerator, f"validation/sample{index}_mel", image, step)
            records.append(
                {
                    "instruction": instruction,
                    "text": text,
                    "audio": os.path.relpath(audio_path, args.output_dir),
                    "mel_image": os.path.relpath(image_path, args.output_dir),
                    "seconds": round(waveform.numel() / pipeline.sampling_rate, 3),
                }
            )
    finally:
        if ema is not None:
            ema.restore(parameters)
        transformer.train(was_training)
    logger.info("Validation at step %d: %d samples in %s", step, len(records), folder)
    return records


def save_final_pipeline(
    accelerator, model, ema, components: dict[str, Any], args: argparse.Namespace, facts: dict[str, Any]
) -> None:
    """`save_pretrained` the pipeline (EMA weights with `--use_ema`) into `--output_dir`, with final samples,
    a model card describing the run, and `training_summary.json`. Every process must call this.

    `save_pretrained` writes into a staging folder and moves the pipeline in with `model_index.json` last, so a run
    killed while saving leaves no loadable half-pipeline (the checkpoints are untouched; resume and it saves again).
    """
    from instructaudio_diffusers import InstructAudioPipeline
    from instructaudio_diffusers.pipelines.model_card import build_model_card

    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    transformer = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to(transformer.parameters())
    transformer.eval()
    samples = []
    if args.validation_instructions and not args.skip_final_validation:
        samples = run_validation(
            accelerator,
            components,
            model,
            None,
            args,
            facts["global_step"],
            Path(args.output_dir, SAMPLES_DIR),
        )
    pipeline = InstructAudioPipeline(**{**components, "transformer": transformer})
    card = build_model_card(
        pipeline,
        model_id=args.hub_model_id or public_path(args.output_dir),
        title="InstructAudio pipeline trained with train_instructaudio.py",
        description=(
            "An [InstructAudio](https://arxiv.org/abs/2511.18487) pipeline (speech, dialogue and music from a "
            "natural-language instruction plus text or lyrics) trained with `training/train_instructaudio.py` of "
            "instructaudio-diffusers."
        ),
        sections=model_card_sections(args, facts, samples),
        tasks=facts["clips_per_task"],
        languages=facts.get("clips_per_language"),
        extra_tags=["instructaudio-training"],
    )
    pipeline.save_pretrained(args.output_dir, model_card=card)
    write_json(Path(args.output_dir, "training_summary.json"), {**facts, "validation_samples": samples})
    logger.info("Saved the pipeline to %s", args.output_dir)


def public_path(path: str) -> str:
    """How a card names a local input: relative paths as given, an installed package by its name, else the last
    folder name (absolute paths describe this machine, not the model)."""
    path = str(path)
    parts = Path(path).parts
    if "site-packages" in parts:
        return f"the `{parts[parts.index('site-packages') + 1]}` package"
    return path if not os.path.isabs(path) else Path(path).name


def model_card_sections(
    args: argparse.Namespace, facts: dict[str, Any], samples: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """The card's Training and Validation samples sections: data, length, optimisation, what it sounds like."""
    init = (
        f"fine-tuned from `{public_path(args.pretrained_model_name_or_path)}`"
        if args.pretrained_model_name_or_path
        else f"a new transformer (`{public_path(args.transformer_config)}`) on the VAE `{public_path(args.vae)}` and "
        f"the instruction encoder {public_path(args.text_encoder)}"
    )
    tasks = ", ".join(f"{task}: {count}" for task, count in sorted(facts["clips_per_task"].items()))
    ema = f"EMA of the weights (decay {args.ema_decay})" if args.use_ema else "the last weights (no EMA)"
    lines = [
        "| | |",
        "|---|---|",
        f"| model | {init} |",
        f"| data | `{public_path(args.dataset_dir)}`: {facts['clips']} clips, {facts['hours']:.3g} h ({tasks}) |",
        f"| steps | {facts['global_step']} optimizer steps, {facts['epochs']} epoch(s) |",
        f"| batching | {facts['batching']} per device x {args.gradient_accumulation_steps} accumulation x "
        f"{facts['num_processes']} process(es) |",
        f"| optimizer | AdamW, lr {args.learning_rate:g} ({args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps), "
        f"weight decay {args.adam_weight_decay:g}, clip {args.max_grad_norm:g} |",
        f"| objective | flow matching, sigma ~ {args.weighting_scheme}; instruction/text dropout "
        f"{args.instruction_dropout:g}/{args.text_dropout:g} ({args.dropout_coupling}); duration loss weight "
        f"{args.duration_loss_weight:g} |",
        f"| weights saved | {ema} |",
        f"| seed | {args.seed} |",
    ]
    sections = [("Training", "\n".join(lines))]
    if samples:
        rows = [
            f"{args.num_validation_inference_steps} Euler steps, guidance scale {args.validation_guidance_scale:g}.",
            "",
            "| instruction | text | audio | mel |",
            "|---|---|---|---|",
        ]
        for sample in samples:
            text = sample["text"].replace("|", "\\|") or "(instrumental)"
            rows.append(
                f"| {sample['instruction']} | {text} | [{sample['audio']}]({sample['audio']}) "
                f"({sample['seconds']:.2f} s) | [png]({sample['mel_image']}) |"
            )
        sections.append(("Validation samples", "\n".join(rows)))
    return sections


def push_to_hub(args: argparse.Namespace) -> str:
    """Upload `--output_dir` (without checkpoints, logs and intermediate validation) to the Hub."""
    return push_folder_to_hub(args, _HUB_IGNORE, "InstructAudio training run")
