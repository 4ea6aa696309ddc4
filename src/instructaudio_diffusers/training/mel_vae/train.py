"""Train the Mel-VAE (`AutoencoderKLMel`) on a dataset written by `prepare_dataset.py`.

Objective, per random fixed-length crop (`--segment_seconds`) of each clip:

    L1(log-mel, reconstruction)                     frames past the end of a short clip are masked out
  + multiscale_weight * L1 over time-average-pooled versions (--multiscale_pooling 2 4 8; off by default)
  + kl_weight * KL(posterior || N(0, I))          summed over latent elements, divided by mel elements
  + adversarial_weight * hinge generator loss      from --adversarial_start_step on (off by default)

The KL normalisation is the LDM convention (both terms as per-sample sums, divided by a constant), so
`--kl_weight 1e-6` is the paper's value and does not change with the crop length. The adversarial
term uses a small 1-D convolutional patch discriminator over log-mel frames with hinge losses. A
fresh VAE starts with its output bias at the data's mean log-mel (see `initialise_output_bias`).

At the end the script measures per-channel `latents_mean`/`latents_std` of the posterior mean over (a
sample of) the dataset and stores them in the VAE config with `scaling_factor` (default 1.0:
`normalize_latents` then yields zero-mean, unit-variance channels, the scale flow matching from
N(0, I) expects), and saves the VAE to `--output_dir` with `save_pretrained` (safetensors). With
`--use_ema` the EMA weights are the ones measured and saved.

Resuming (`--resume_from_checkpoint latest`) restores model, optimizer, scheduler, EMA and loop
position, and replays the data order exactly: the sampler's order, the crops and the posterior noise
are pure functions of (seed, epoch, batch), so an interrupted run ends with the same weights as an
uninterrupted one (same world size and batch size).

    accelerate launch --config_file training/configs/accelerate_single_cpu.yaml training/train_mel_vae.py \\
        --dataset_dir data/prepared --vae_config configs/demo/vae/config.json --output_dir runs/mel_vae
    # every option from a file (flags still override):
    python training/train_mel_vae.py --config training/configs/mel_vae_demo.json
    # two CPU processes (gloo DDP), e.g. to check distributed behaviour without GPUs:
    torchrun --nproc_per_node 2 training/train_mel_vae.py --cpu --dataset_dir ... --output_dir ...
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..args import (
    add_common_training_args,
    apply_config_file_defaults,
    check_common_training_args,
    check_input_paths,
)
from ..batching import EpochSeededSampler, TrainingProgress, keyed_generator, training_length
from ..checkpointing import (
    CheckpointState,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ..data import load_prepared_dataset, resolve_training_data, subset_for_training
from ..runtime import adamw_from_args, create_accelerator, finish_training, lr_scheduler_from_args
from ..tracking import (
    TrainingSummary,
    log_audio,
    log_image,
    plot_mel,
    push_folder_to_hub,
    tracker_config,
    write_json,
)
from ..vocoder import load_vocoder
from .data import MelVAECropDataset, collate, load_clip
from .objective import (
    MelPatchDiscriminator,
    MelVAEObjectiveConfig,
    MelVAETrainingModule,
    discriminator_hinge_loss,
    vae_losses,
)

logger = logging.getLogger("train_mel_vae")
_PATH_COLUMNS = ("audio_path", "audio_path_absolute", "source_path")
_HUB_IGNORE = [
    "checkpoint-*",
    "checkpoint-*/**",
    "*.partial/**",
    "logs/**",
    "validation/**",
    "prepared_data/**",
]


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Options from the command line; `--config FILE.json` supplies defaults that explicit flags override."""
    parser = argparse.ArgumentParser(description="Train the Mel-VAE with accelerate.")
    parser.add_argument(
        "--config", type=str, default=None, help="JSON/YAML file of option defaults (keys = flag names)."
    )
    add_common_training_args(parser, learning_rate=2e-4, train_batch_size=16, output_dir="runs/mel_vae")

    group = parser.add_argument_group("crops")
    group.add_argument("--segment_seconds", type=float, default=2.0, help="Random crop length per clip.")

    group = parser.add_argument_group("model")
    group.add_argument(
        "--vae_config", type=str, default=None, help="AutoencoderKLMel config.json (or its folder)."
    )
    group.add_argument("--pretrained_vae", type=str, default=None, help="Fine-tune this saved VAE instead.")

    group = parser.add_argument_group("losses")
    group.add_argument(
        "--kl_weight", type=float, default=1e-6, help="KL weight (LDM normalisation, see above)."
    )
    group.add_argument("--multiscale_pooling", type=int, nargs="*", default=[], help="Time pooling factors.")
    group.add_argument("--multiscale_weight", type=float, default=1.0)
    group.add_argument(
        "--adversarial_start_step", type=int, default=None, help="Enable the GAN term from here."
    )
    group.add_argument("--adversarial_weight", type=float, default=0.1)
    group.add_argument("--discriminator_lr", type=float, default=None, help="Defaults to --learning_rate.")
    group.add_argument("--discriminator_channels", type=int, default=64)

    group = parser.add_argument_group("validation and latent statistics")
    group.add_argument("--vocoder", type=str, default=None, help="Vocoder folder; Griffin-Lim when omitted.")
    group.add_argument("--num_validation_clips", type=int, default=4)
    group.add_argument("--validation_max_seconds", type=float, default=6.0)
    group.add_argument(
        "--latent_stats_max_clips", type=int, default=512, help="Clips sampled for the statistics."
    )
    group.add_argument("--latent_stats_max_seconds", type=float, default=30.0)
    group.add_argument("--latents_scaling_factor", type=float, default=1.0, help="Stored as scaling_factor.")

    args = parser.parse_args(apply_config_file_defaults(parser, input_args))

    try:
        check_common_training_args(args)
    except ValueError as err:
        parser.error(str(err))
    if args.segment_seconds <= 0 or args.kl_weight < 0 or args.multiscale_weight < 0:
        parser.error("--segment_seconds must be positive; --kl_weight and --multiscale_weight non-negative.")
    if any(factor < 2 for factor in args.multiscale_pooling):
        parser.error("--multiscale_pooling factors must be >= 2.")
    if args.adversarial_start_step is not None and args.adversarial_start_step < 0:
        parser.error("--adversarial_start_step must be >= 0.")
    if args.vae_config and args.pretrained_vae:
        parser.error("give --vae_config or --pretrained_vae, not both.")
    check_input_paths(
        parser,
        args,
        ("dataset_dir", "train_data_dir", "vae_config", "pretrained_vae", "vocoder", "audio_root"),
    )
    return args


def build_vae(args: argparse.Namespace):
    from instructaudio_diffusers import AutoencoderKLMel

    if args.pretrained_vae:
        return AutoencoderKLMel.from_pretrained(args.pretrained_vae)
    if args.vae_config:
        config = dict(AutoencoderKLMel.load_config(args.vae_config))
        # Statistics belong to trained weights; a fresh model measures its own at the end.
        config.update(latents_mean=None, latents_std=None)
        return AutoencoderKLMel.from_config(config)
    return AutoencoderKLMel()


@torch.no_grad()
def initialise_output_bias(
    vae, rows: list[dict[str, Any]], args: argparse.Namespace, max_clips: int = 32
) -> None:
    """Set the decoder's output bias to the per-bin mean log-mel of a few clips.

    Log-mels sit far from zero (silence is log(1e-5) = -11.5) while a fresh decoder outputs ~0, so
    without this the first hundreds of steps only learn that offset, one learning rate per step.
    """
    mel_spectrogram = vae.mel_spectrogram()
    total = torch.zeros(vae.config.n_mels, dtype=torch.float64)
    frames = 0
    for index in np.unique(np.linspace(0, len(rows) - 1, min(max_clips, len(rows))).round().astype(int)):
        clip = load_clip(
            rows[index], args.dataset_dir, args.audio_root, vae.config.sampling_rate, args.segment_seconds
        )
        mel = mel_spectrogram(clip.to(vae.device))[0].double().cpu()
        total += mel.sum(dim=-1)
        frames += mel.shape[-1]
    vae.decoder.conv_out.bias.copy_((total / frames).to(vae.decoder.conv_out.bias))


# ---------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def run_validation(
    accelerator,
    model,
    ema,
    mel_spectrogram,
    vocoder,
    clips: list[torch.Tensor],
    step: int,
    args: argparse.Namespace,
) -> float:
    """Reconstruct the validation clips (posterior mode, EMA weights if any); log audio, images, L1.

    Every process runs the forwards (FSDP needs all ranks); the main process logs and writes
    `validation/step-<step>/` (WAV and PNG) under the output folder.
    """
    from instructaudio_diffusers.audio import write_wav
    from instructaudio_diffusers.models import vocode

    vae_parameters = accelerator.unwrap_model(model).vae.parameters()
    if ema is not None:
        vae_parameters = list(vae_parameters)
        ema.store(vae_parameters)
        ema.copy_to(vae_parameters)
    model.eval()
    errors = []
    folder = Path(args.output_dir, "validation", f"step-{step}")
    sampling_rate = mel_spectrogram.sampling_rate
    for index, clip in enumerate(clips):
        mel = mel_spectrogram(clip.to(accelerator.device)[None])
        reconstruction, _ = model(mel, sample_posterior=False)
        reconstruction = reconstruction.float()
        errors.append((reconstruction - mel).abs().mean().item())
        if not accelerator.is_main_process:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        limits = {"vmin": float(mel.min()), "vmax": float(mel.max())}
        for name, spectrogram in (("original", mel), ("reconstruction", reconstruction)):
            image = plot_mel(
                spectrogram[0],
                sampling_rate,
                mel_spectrogram.hop_length,
                folder / f"clip{index}_{name}.png",
                f"{name} (step {step})",
                **limits,
            )
            log_image(accelerator, f"validation/clip{index}/{name}_mel", image, step)
            # The original goes through the same vocoder, so listening compares VAE error only.
            waveform = vocode(vocoder, spectrogram)[0]
            log_audio(accelerator, f"validation/clip{index}/{name}", waveform, sampling_rate, step)
            write_wav(folder / f"clip{index}_{name}.wav", waveform, sampling_rate)
    if ema is not None:
        ema.restore(vae_parameters)
    model.train()
    return float(np.mean(errors)) if errors else float("nan")


@torch.no_grad()
def compute_latent_statistics(vae, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Per-channel mean and std of the posterior mean over all frames of a seeded sample of clips."""
    mel_spectrogram = vae.mel_spectrogram()
    order = np.random.default_rng(args.seed).permutation(len(rows))[: args.latent_stats_max_clips]
    channels = vae.config.latent_channels
    # float64 sums: the variance is E[x^2] - E[x]^2 over up to millions of frames.
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for index in order.tolist():
        clip = load_clip(
            rows[index],
            args.dataset_dir,
            args.audio_root,
            vae.config.sampling_rate,
            args.latent_stats_max_seconds,
        )
        latents = vae.encode(mel_spectrogram(clip.to(vae.device))).latent_dist.mode()[0].double().cpu()
        total += latents.sum(dim=-1)
        total_sq += latents.pow(2).sum(dim=-1)
        count += latents.shape[-1]
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp(min=1e-12).sqrt().clamp(min=1e-6)
    return {"latents_mean": mean.tolist(), "latents_std": std.tolist(), "clips": len(order), "frames": count}


# ---------------------------------------------------------------------------------------------- training
@dataclass
class MelVAERun:
    """Everything the loop touches, built and `accelerator.prepare`d by `setup_run`."""

    accelerator: Any
    model: nn.Module
    optimizer: Any
    lr_scheduler: Any
    train_dataloader: Any
    sampler: EpochSeededSampler
    mel_spectrogram: nn.Module
    rows: list[dict[str, Any]]
    segment_samples: int
    max_train_steps: int
    num_train_epochs: int
    objective: MelVAEObjectiveConfig
    progress: TrainingProgress = field(default_factory=TrainingProgress)
    discriminator: nn.Module | None = None
    discriminator_optimizer: Any = None
    ema: Any = None
    checkpoint_state: CheckpointState | None = None


def build_dataloader(
    args: argparse.Namespace, rows: list[dict[str, Any]], vae
) -> tuple[DataLoader, Any, int]:
    """`(dataloader, sampler, segment_samples)`; crops span whole latent frames, so none straddles an edge."""
    config = vae.config
    frame = config.hop_length * vae.time_downsample_factor
    segment_samples = max(1, round(args.segment_seconds * config.sampling_rate / frame)) * frame
    dataset = MelVAECropDataset(
        rows, args.dataset_dir, args.audio_root, config.sampling_rate, segment_samples, args.seed
    )
    sampler = EpochSeededSampler(len(dataset), seed=args.seed)
    dataloader = DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=args.dataloader_num_workers,
        # Safe to keep workers across epochs: the epoch travels in each key, not in worker state.
        persistent_workers=args.dataloader_num_workers > 0,
    )
    return dataloader, sampler, segment_samples


def setup_run(args: argparse.Namespace) -> MelVAERun:
    """Accelerator, data, model, optimizers, scheduler, EMA; then the checkpoint to resume from, if any."""
    from accelerate.utils import DistributedType, set_seed
    from diffusers.training_utils import EMAModel

    from instructaudio_diffusers import AutoencoderKLMel

    accelerator = create_accelerator(args)
    if accelerator.distributed_type == DistributedType.FSDP and (
        args.use_ema or args.adversarial_start_step is not None
    ):
        raise ValueError("--use_ema and the adversarial term need replicated weights: use DDP, not FSDP.")
    # Before anything is loaded or written: a checkpoint that cannot be resumed is refused in seconds.
    checkpoint = find_checkpoint(args.output_dir, args.resume_from_checkpoint)
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(Path(args.output_dir, "training_args.json"), vars(args))

    with accelerator.main_process_first():  # a raw --train_data_dir / --dataset_name is prepared once
        args.dataset_dir = resolve_training_data(args)
    dataset = subset_for_training(load_prepared_dataset(args.dataset_dir), args)
    columns = [c for c in (*_PATH_COLUMNS, "duration_s", "sampling_rate") if c in dataset.column_names]
    rows = dataset.select_columns(columns).to_list()
    vae = build_vae(args)
    if not args.pretrained_vae:
        initialise_output_bias(vae, rows, args)
    vae.train()
    train_dataloader, sampler, segment_samples = build_dataloader(args, rows, vae)
    model = MelVAETrainingModule(vae)
    if args.scale_lr:
        args.learning_rate *= (
            args.train_batch_size * args.gradient_accumulation_steps * accelerator.num_processes
        )
    optimizer = adamw_from_args(args, model.parameters())
    model, optimizer, train_dataloader = accelerator.prepare(model, optimizer, train_dataloader)
    max_train_steps, num_train_epochs = training_length(
        len(train_dataloader), args.gradient_accumulation_steps, args.max_train_steps, args.num_train_epochs
    )
    lr_scheduler = lr_scheduler_from_args(args, optimizer, max_train_steps, accelerator.num_processes)
    run = MelVAERun(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        lr_scheduler=accelerator.prepare(lr_scheduler),
        train_dataloader=train_dataloader,
        sampler=sampler,
        mel_spectrogram=vae.mel_spectrogram().to(accelerator.device),
        rows=rows,
        segment_samples=segment_samples,
        max_train_steps=max_train_steps,
        num_train_epochs=num_train_epochs,
        objective=MelVAEObjectiveConfig.from_args(args),
    )
    if args.adversarial_start_step is not None:
        discriminator = MelPatchDiscriminator(vae.config.n_mels, args.discriminator_channels)
        discriminator_optimizer = torch.optim.AdamW(
            discriminator.parameters(), lr=args.discriminator_lr or args.learning_rate, betas=(0.5, 0.9)
        )
        run.discriminator, run.discriminator_optimizer = accelerator.prepare(
            discriminator, discriminator_optimizer
        )
    if args.use_ema:
        run.ema = EMAModel(
            accelerator.unwrap_model(model).vae.parameters(),
            decay=args.ema_decay,
            model_cls=AutoencoderKLMel,
            model_config=vae.config,
        )
        run.ema.to(accelerator.device)
    # The loop position and the EMA go in as JSON and safetensors (see `checkpointing`), never as pickles.
    run.checkpoint_state = CheckpointState(
        run.progress,
        run.ema,
        ema_folder="vae_ema",
        ema_parameter_names=[name for name, _ in accelerator.unwrap_model(model).vae.named_parameters()],
    )
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, run.checkpoint_state)
    return run


def train_batch(
    run: MelVAERun, batch: dict[str, torch.Tensor], epoch: int, args: argparse.Namespace
) -> dict[str, torch.Tensor]:
    """Forward, backward and (when accumulation completes) the optimizer steps for one micro-batch."""
    accelerator, model = run.accelerator, run.model
    adversarial = run.discriminator is not None and run.progress.global_step >= args.adversarial_start_step
    models = (model,) if run.discriminator is None else (model, run.discriminator)
    with accelerator.accumulate(*models):
        with torch.no_grad():
            mel = run.mel_spectrogram(batch["waveform"].float())
        hop_length = run.mel_spectrogram.hop_length
        frame_mask = torch.arange(mel.shape[-1], device=mel.device)[None] < (
            batch["num_samples"][:, None] // hop_length
        )
        # Noise keyed by position in the data order, so a resumed run draws what the original would have.
        generator = keyed_generator(
            args.seed, epoch, run.progress.batches_in_epoch, accelerator.process_index
        )
        discriminator = accelerator.unwrap_model(run.discriminator) if adversarial else None
        losses, fake = vae_losses(
            accelerator, model, discriminator, mel, frame_mask, generator, run.objective
        )
        accelerator.backward(losses["loss"])
        if accelerator.sync_gradients:
            max_norm = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
            losses["grad_norm"] = torch.as_tensor(accelerator.clip_grad_norm_(model.parameters(), max_norm))
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        if adversarial:
            losses["discriminator"] = discriminator_hinge_loss(run.discriminator, mel, fake)
            accelerator.backward(losses["discriminator"])
            run.discriminator_optimizer.step()
            run.discriminator_optimizer.zero_grad(set_to_none=True)
    return {name: value.detach().float() for name, value in losses.items()}


def step_logs(run: MelVAERun, running: dict[str, list[torch.Tensor]], seconds: float, total_batch: int):
    """Means over the step's micro-batches and over processes, plus learning rate and throughput."""
    logs = {
        f"train/{name}": run.accelerator.reduce(torch.stack(values).mean(), reduction="mean").item()
        for name, values in running.items()
    }
    logs["train/lr"] = run.lr_scheduler.get_last_lr()[0]
    logs["train/samples_per_second"] = total_batch / max(seconds, 1e-9)
    return logs


def main(args: argparse.Namespace) -> TrainingSummary:
    from tqdm.auto import tqdm

    run = setup_run(args)
    accelerator, progress = run.accelerator, run.progress
    first_epoch, skip_batches = progress.resume_position(len(run.train_dataloader))
    vae = accelerator.unwrap_model(run.model).vae
    config = vae.config
    if accelerator.is_main_process:
        accelerator.init_trackers(args.tracker_project_name or "train_mel_vae", config=tracker_config(args))
    vocoder = (
        load_vocoder(args.vocoder, vae.mel_settings, accelerator.device)
        if accelerator.is_main_process
        else None
    )
    # Evenly spaced over the dataset, so speech and music are both heard when the rows are grouped.
    indices = np.unique(np.linspace(0, len(run.rows) - 1, args.num_validation_clips).round().astype(int))
    validation_clips = [
        load_clip(
            run.rows[i], args.dataset_dir, args.audio_root, config.sampling_rate, args.validation_max_seconds
        )
        for i in indices.tolist()
    ]
    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        "clips=%d segment=%.2fs batches/epoch/process=%d total batch=%d steps=%d epochs=%d start step=%d",
        len(run.rows),
        run.segment_samples / config.sampling_rate,
        len(run.train_dataloader),
        total_batch,
        run.max_train_steps,
        run.num_train_epochs,
        progress.global_step,
    )
    summary = TrainingSummary(global_step=progress.global_step, output_dir=args.output_dir)
    progress_bar = tqdm(
        range(run.max_train_steps),
        initial=progress.global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    running: dict[str, list[torch.Tensor]] = {}
    step_started = time.perf_counter()

    for epoch in range(first_epoch, run.num_train_epochs):
        if progress.global_step >= run.max_train_steps:
            break
        run.sampler.set_epoch(epoch)
        run.train_dataloader.set_epoch(epoch)
        dataloader = run.train_dataloader
        progress.epoch, progress.batches_in_epoch = epoch, 0
        if epoch == first_epoch and skip_batches:
            dataloader = accelerator.skip_first_batches(run.train_dataloader, skip_batches)
            dataloader.set_epoch(epoch)
            progress.batches_in_epoch = skip_batches
        run.model.train()
        for batch in dataloader:
            for name, value in train_batch(run, batch, epoch, args).items():
                running.setdefault(name, []).append(value)
            progress.batches_in_epoch += 1
            if not accelerator.sync_gradients:
                continue

            progress.global_step += 1
            step = progress.global_step
            if run.ema is not None:
                run.ema.step(accelerator.unwrap_model(run.model).vae.parameters())
            logs = step_logs(run, running, time.perf_counter() - step_started, total_batch)
            running.clear()
            summary.losses.append(logs["train/loss"])
            accelerator.log(logs, step=step)
            progress_bar.update(1)
            progress_bar.set_postfix(loss=f"{logs['train/loss']:.4f}", lr=f"{logs['train/lr']:.2e}")
            if step % args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator, args.output_dir, step, args.checkpoints_total_limit, run.checkpoint_state
                )
            if args.validation_steps and step % args.validation_steps == 0 and validation_clips:
                l1 = run_validation(
                    accelerator,
                    run.model,
                    run.ema,
                    run.mel_spectrogram,
                    vocoder,
                    validation_clips,
                    step,
                    args,
                )
                accelerator.log({"validation/mel_l1": l1}, step=step)
            step_started = time.perf_counter()
            if step >= run.max_train_steps:
                break

    summary.global_step = progress.global_step
    save_final_model(accelerator, run.model, run.ema, run.rows, args)
    del run  # the DDP wrappers go before the process group (see finish_training)
    finish_training(accelerator)
    if args.push_to_hub and accelerator.is_main_process:
        push_folder_to_hub(args, _HUB_IGNORE, "Mel-VAE training run")
    return summary


def save_final_model(accelerator, model, ema, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Measure latent statistics with the final (EMA) weights and `save_pretrained` the VAE."""
    from instructaudio_diffusers import AutoencoderKLMel

    accelerator.wait_for_everyone()
    vae = accelerator.unwrap_model(model).vae
    if ema is not None:
        ema.copy_to(vae.parameters())
    state_dict = accelerator.get_state_dict(model)  # gathers FSDP shards; every process must call it
    if not accelerator.is_main_process:
        return
    final = AutoencoderKLMel.from_config(vae.config)
    final.load_state_dict({key.removeprefix("vae."): value for key, value in state_dict.items()})
    final.to(accelerator.device).eval()
    statistics = compute_latent_statistics(final, rows, args)
    final.register_to_config(
        latents_mean=statistics["latents_mean"],
        latents_std=statistics["latents_std"],
        scaling_factor=args.latents_scaling_factor,
    )
    final.save_pretrained(args.output_dir, safe_serialization=True)
    write_json(Path(args.output_dir, "latent_statistics.json"), statistics)
    write_vae_card(final, rows, args, statistics)
    logger.info("Saved the VAE to %s (latent statistics over %d clips)", args.output_dir, statistics["clips"])


def write_vae_card(
    vae, rows: list[dict[str, Any]], args: argparse.Namespace, statistics: dict[str, Any]
) -> None:
    """A short `README.md` for the VAE folder, with the Hub metadata and no local paths."""
    from huggingface_hub import ModelCard, ModelCardData

    config = vae.config
    data = ModelCardData(
        library_name="diffusers",
        license="apache-2.0",
        tags=["instructaudio", "mel-vae", "audio", "diffusers"],
    )
    hours = sum(row.get("duration_s", 0.0) for row in rows) / 3600
    text = (
        f"---\n{data.to_yaml()}\n---\n\n# Mel-VAE for InstructAudio\n\n"
        "An `AutoencoderKLMel` (instructaudio-diffusers) trained with `training/train_mel_vae.py`: "
        f"{config.n_mels} log-mel bins at {config.sampling_rate} Hz (hop {config.hop_length}) to "
        f"{config.latent_channels} latent channels at {vae.latent_frame_rate:.1f} Hz, on {len(rows)} clips "
        f"({hours:.3g} h) for {args.max_train_steps or 'all'} steps; latent statistics from {statistics['clips']} "
        "clips are in its config.\n\n## Usage\n\n"
        '```bash\npip install -e ".[demo]"   # in a checkout of instructaudio-diffusers\n```\n\n'
        "```python\nfrom instructaudio_diffusers import AutoencoderKLMel\n\n"
        f'vae = AutoencoderKLMel.from_pretrained("{args.hub_model_id or Path(args.output_dir).name}")\n```\n'
    )
    ModelCard(text).save(Path(args.output_dir, "README.md"))
