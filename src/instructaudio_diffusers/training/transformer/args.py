"""Command-line options of `train_instructaudio.py`: every option as a flag, `--config FILE` (JSON or YAML)
for defaults, and checks that fail before any model is loaded."""

from __future__ import annotations

import argparse

from ..args import (
    add_common_training_args,
    apply_config_file_defaults,
    check_common_training_args,
    check_input_paths,
)

DEFAULT_VALIDATION_PROMPTS = [
    ("A young woman speaks cheerfully at a normal pace.", "Hello! What a sunny day it is today."),
    ("An elderly man speaks slowly in a calm, low voice.", "你好,今天天气怎么样?"),
    ("A man and a woman chat happily.", "[S0] Hi, how are you? [S1] I am fine, thank you!"),
    ("Upbeat electronic dance track with a bright synth lead, fast tempo.", ""),
]


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Options from the command line; `--config FILE` (JSON or YAML) supplies defaults that flags override."""
    parser = argparse.ArgumentParser(description="Train the InstructAudio MM-DiT with accelerate.")
    parser.add_argument(
        "--config", type=str, default=None, help="JSON/YAML file of option defaults (keys = flag names)."
    )
    add_common_training_args(parser, learning_rate=1e-4, train_batch_size=16, output_dir="runs/instructaudio")

    group = parser.add_argument_group("data and batching")
    group.add_argument("--ignore_cached_latents", action="store_true", help="Encode audio on the fly anyway.")
    group.add_argument(
        "--ignore_cached_instructions", action="store_true", help="Encode instructions on the fly."
    )
    group.add_argument(
        "--latent_posterior",
        choices=["sample", "mean"],
        default="sample",
        help="Train on posterior samples (what the VAE decoder saw) or on its mean.",
    )
    group.add_argument(
        "--max_frames_per_batch",
        type=int,
        default=None,
        help="Frame-budget batching: padded latent frames per batch and device. "
        "Without it, --train_batch_size clips per batch.",
    )
    group.add_argument(
        "--bucket_tolerance",
        type=float,
        default=0.05,
        help="Clips whose lengths differ by less than this fraction are shuffled together.",
    )
    group.add_argument(
        "--max_batch_size", type=int, default=None, help="Cap on clips per frame-budget batch."
    )
    group.add_argument(
        "--max_latent_frames",
        type=int,
        default=None,
        help="Skip longer clips (default: the transformer's max_audio_frames).",
    )

    group = parser.add_argument_group("model")
    group.add_argument(
        "--pretrained_model_name_or_path",
        type=str,
        default=None,
        help="A saved InstructAudioPipeline (folder or repo id) to fine-tune.",
    )
    group.add_argument(
        "--transformer_config",
        type=str,
        default=None,
        help="New transformer from this config.json (or folder); needs --vae and --text_encoder.",
    )
    group.add_argument("--vae", type=str, default=None, help="Trained AutoencoderKLMel folder.")
    group.add_argument("--vocoder", type=str, default=None, help="Vocoder folder; Griffin-Lim when omitted.")
    group.add_argument(
        "--text_encoder",
        type=str,
        default=None,
        help="transformers encoder folder; its tokenizer is loaded from the same folder.",
    )
    group.add_argument(
        "--processor", type=str, default=None, help="Saved InstructAudioProcessor (default: new)."
    )
    group.add_argument(
        "--gradient_checkpointing", action="store_true", help="Trade compute for activation memory."
    )

    group = parser.add_argument_group("objective")
    group.add_argument(
        "--weighting_scheme",
        choices=["uniform", "logit_normal", "mode"],
        default="uniform",
        help="Density of sigma (diffusers' compute_density_for_timestep_sampling).",
    )
    group.add_argument("--logit_mean", type=float, default=0.0)
    group.add_argument("--logit_std", type=float, default=1.0)
    group.add_argument("--mode_scale", type=float, default=1.29)
    group.add_argument(
        "--instruction_dropout", type=float, default=0.1, help="P(instruction masked out) per clip."
    )
    group.add_argument("--text_dropout", type=float, default=0.2, help="P(phonemes masked out) per clip.")
    group.add_argument(
        "--dropout_coupling",
        choices=["nested", "independent"],
        default="nested",
        help="nested: a clip with its instruction dropped also has its text dropped (see above).",
    )
    group.add_argument(
        "--duration_loss_weight",
        type=float,
        default=1.0,
        help="Weight of the duration predictor's log-L1 loss (its input is detached).",
    )

    group = parser.add_argument_group("validation")
    group.add_argument(
        "--validation_instructions",
        type=str,
        nargs="*",
        default=[instruction for instruction, _ in DEFAULT_VALIDATION_PROMPTS],
    )
    group.add_argument(
        "--validation_texts",
        type=str,
        nargs="*",
        default=[text for _, text in DEFAULT_VALIDATION_PROMPTS],
        help="One per instruction; '' for instrumental music.",
    )
    group.add_argument(
        "--validation_audio_length_in_s",
        type=float,
        nargs="*",
        default=[3.0],
        help="One value for all prompts or one per prompt; <= 0 lets the duration predictor decide.",
    )
    group.add_argument("--num_validation_inference_steps", type=int, default=32)
    group.add_argument("--validation_guidance_scale", type=float, default=2.0)
    group.add_argument(
        "--skip_final_validation",
        action="store_true",
        help="Do not generate the samples listed in the model card at the end.",
    )

    args = parser.parse_args(apply_config_file_defaults(parser, input_args))
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    try:
        check_common_training_args(args)
    except ValueError as err:
        parser.error(str(err))
    for name in ("instruction_dropout", "text_dropout"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name} must be in [0, 1].")
    if args.duration_loss_weight < 0:
        parser.error("--duration_loss_weight must be >= 0.")
    for name in ("max_frames_per_batch", "max_batch_size", "max_latent_frames"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1 when given.")
    if args.pretrained_model_name_or_path and args.transformer_config:
        parser.error(
            "give --pretrained_model_name_or_path (fine-tune) or --transformer_config (new model), not both."
        )
    if not args.pretrained_model_name_or_path:
        if not (args.transformer_config and args.vae and args.text_encoder):
            parser.error(
                "a new model needs --transformer_config, --vae and --text_encoder "
                "(or fine-tune a saved pipeline with --pretrained_model_name_or_path)."
            )
    if len(args.validation_instructions) != len(args.validation_texts):
        parser.error(
            "give one --validation_texts entry per --validation_instructions entry ('' for instrumental)."
        )
    if len(args.validation_audio_length_in_s) not in (1, len(args.validation_instructions)):
        parser.error("--validation_audio_length_in_s takes one value or one per validation instruction.")
    check_input_paths(
        parser,
        args,
        ("dataset_dir", "train_data_dir", "transformer_config", "vae", "vocoder", "processor", "text_encoder")
        + ("pretrained_model_name_or_path", "audio_root"),
    )
