"""Train the InstructAudio MM-DiT (flow matching over Mel-VAE latents) on a dataset from `prepare_dataset.py`.

Objective, per clip, with `x0` the normalised Mel-VAE latents and `sigma` drawn by `--weighting_scheme`
(diffusers' `compute_density_for_timestep_sampling`; `uniform` is the paper's t ~ U[0, 1)):

    x_t = (1 - sigma) * x0 + sigma * noise         (diffusers' FlowMatch convention: sigma = 1 is noise)
    loss = mean over valid latent elements of || v(x_t, sigma * T, instruction, phonemes) - (noise - x0) ||^2
         + duration_loss_weight * | predicted log frames - log frames |   (clips whose conditions were kept)

Padded frames never count, and the mean runs over the valid elements of all processes, so every frame
weighs the same whatever the batch composition or world size. The VAE and the instruction encoder are
frozen; their outputs come from the dataset's cached columns when present (`prepare_dataset.py
--precompute_*`), otherwise they run on the fly under `no_grad`.

Classifier-free guidance: per clip, the instruction is dropped with `--instruction_dropout` and the text
with `--text_dropout`, by setting the whole mask to False exactly as the pipeline's unconditional branch
does. `--dropout_coupling nested` (default) draws one number per clip, so a clip whose instruction is
dropped has its text dropped too: the marginals are as given, and min(p_instruction, p_text) of the clips
(not their product) train the fully unconditional branch the pipeline uses by default.

Batching: `--max_frames_per_batch N` packs clips of similar length up to N padded latent frames per batch
and device (`batching.FrameBudgetBatchSampler`); without it, `--train_batch_size` clips per batch.

Checkpoints (`--checkpointing_steps`) are `checkpoint-<step>/` folders written atomically, holding the
transformer (and `transformer_ema/`) as `save_pretrained` folders plus optimizer, scheduler, RNG and loop
state (`training_state.json`); a checkpoint is read without running code (see `checkpointing`), and
`--resume_from_checkpoint latest` continues with the same data order, noise and weights as an
uninterrupted run (same world size). The final pipeline (EMA weights with `--use_ema`), its validation
samples and a model card are written to `--output_dir`.

    python training/train_instructaudio.py --config training/configs/instructaudio_demo.yaml
    torchrun --nproc_per_node 2 training/train_instructaudio.py --cpu --config ...   # 2 CPU processes, gloo DDP
    accelerate launch --multi_gpu --num_processes 8 training/train_instructaudio.py --config ...
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..batching import (
    FixedSizeBatchSampler,
    FrameBudgetBatchSampler,
    TrainingProgress,
    keyed_generator,
    updates_per_epoch,
)
from ..checkpointing import (
    CheckpointState,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ..data import load_prepared_dataset, resolve_training_data, subset_for_training
from ..runtime import adamw_from_args, create_accelerator, finish_training, lr_scheduler_from_args
from ..tracking import TrainingSummary, tracker_config, write_json
from ..vocoder import load_vocoder
from .args import parse_args
from .data import (
    InstructAudioCollator,
    InstructAudioTrainingDataset,
    clip_latent_frames,
    describe_dataset,
    encode_instructions,
    encode_latents,
)
from .objective import FlowMatchingObjectiveConfig, flow_matching_losses
from .outputs import push_to_hub, run_validation, save_final_pipeline

__all__ = ["load_components", "main", "parse_args"]
logger = logging.getLogger("train_instructaudio")

# Distinct streams of the keyed generator, so a change in one never shifts the other.
_RNG_POSTERIOR, _RNG_FLOW = 0, 1


# ---------------------------------------------------------------------------------------------- components
def load_components(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline's components: a saved pipeline, or a new transformer around trained frozen parts."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from transformers import AutoModel, AutoTokenizer

    from instructaudio_diffusers import (
        AutoencoderKLMel,
        InstructAudioPipeline,
        InstructAudioProcessor,
        InstructAudioTransformerModel,
    )

    if args.pretrained_model_name_or_path:
        components = dict(
            InstructAudioPipeline.from_pretrained(args.pretrained_model_name_or_path).components
        )
        ignored = [f"--{name}" for name in ("vae", "text_encoder", "processor") if getattr(args, name)]
        if ignored:
            logger.warning("Fine-tuning a saved pipeline: %s ignored (the pipeline's own are used).", ignored)
        if args.vocoder:  # e.g. a trained HiFi-GAN instead of the pipeline's Griffin-Lim, for validation
            components["vocoder"] = load_vocoder(
                args.vocoder, components["vae"].mel_settings, torch.device("cpu")
            )
        return components
    vae = AutoencoderKLMel.from_pretrained(args.vae)
    text_encoder = AutoModel.from_pretrained(args.text_encoder)
    processor = (
        InstructAudioProcessor.from_pretrained(args.processor) if args.processor else InstructAudioProcessor()
    )
    components = {
        "tokenizer": AutoTokenizer.from_pretrained(args.text_encoder),
        "text_encoder": text_encoder,
        "processor": processor,
        "vae": vae,
        "vocoder": load_vocoder(args.vocoder, vae.mel_settings, torch.device("cpu")),
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=1.0),  # sigmas are always passed explicitly
    }
    config = dict(InstructAudioTransformerModel.load_config(args.transformer_config))
    expected = {
        "in_channels": vae.config.latent_channels,
        "instruction_dim": text_encoder.config.hidden_size,
    }
    for key, value in expected.items():
        if config.get(key) != value:
            raise ValueError(
                f"{args.transformer_config}: {key}={config.get(key)} but the components need {value}."
            )
    if config.get("phoneme_vocab_size", 0) < len(components["processor"]):
        raise ValueError(
            f"{args.transformer_config}: phoneme_vocab_size={config.get('phoneme_vocab_size')} is smaller than "
            f"the processor's vocabulary ({len(components['processor'])})."
        )
    components["transformer"] = InstructAudioTransformerModel.from_config(config)
    return components


def register_checkpoint_hooks(accelerator) -> None:
    """Save/load the transformer in checkpoints as a `save_pretrained` folder (its EMA: `CheckpointState`)."""
    from instructaudio_diffusers import InstructAudioTransformerModel

    def save_model_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            for model in models:
                accelerator.unwrap_model(model).save_pretrained(os.path.join(output_dir, "transformer"))
                weights.pop()  # written above; accelerate must not save it a second time

    def load_model_hook(models, input_dir):
        while models:
            model = accelerator.unwrap_model(models.pop())
            loaded = InstructAudioTransformerModel.from_pretrained(
                input_dir, subfolder="transformer", use_safetensors=True
            )
            model.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)


# ---------------------------------------------------------------------------------------------- data
def build_training_data(args: argparse.Namespace, components: dict[str, Any]):
    """`(dataset, batch sampler, data loader, facts)`; clips the transformer cannot place are left out."""
    from torch.utils.data import DataLoader

    vae, transformer = components["vae"], components["transformer"]
    rows = subset_for_training(load_prepared_dataset(args.dataset_dir), args)
    frames = clip_latent_frames(rows, dict(vae.config), vae.time_downsample_factor)
    max_frames = transformer.config.max_audio_frames
    limit = min(args.max_latent_frames or max_frames, max_frames, args.max_frames_per_batch or max_frames)
    keep = np.flatnonzero(frames <= limit)
    if len(keep) == 0:
        raise ValueError(f"every clip is longer than {limit} latent frames: nothing to train on.")
    if len(keep) < len(frames):
        # Cropping would cut words out of the clip but not out of its text.
        logger.warning(
            "Skipping %d of %d clips longer than %d latent frames.",
            len(frames) - len(keep),
            len(frames),
            limit,
        )
    rows, frames = rows.select(keep.tolist()), frames[keep]
    dataset = InstructAudioTrainingDataset(
        rows,
        args.dataset_dir,
        components["processor"],
        frames,
        vae.config.sampling_rate,
        args.audio_root,
        use_cached_latents=not args.ignore_cached_latents,
        use_cached_instructions=not args.ignore_cached_instructions,
        use_durations=transformer.phoneme_alignment == "durations",
    )
    if (
        dataset.cached_instructions
        and len(rows[0]["instruction_embeds"][0]) != transformer.config.instruction_dim
    ):
        raise ValueError(
            f"the cached instruction embeddings are {len(rows[0]['instruction_embeds'][0])}-d but the transformer "
            f"takes {transformer.config.instruction_dim}: rerun the precompute pass with this pipeline's encoder."
        )
    if args.max_frames_per_batch is not None:
        sampler = FrameBudgetBatchSampler(
            frames,
            args.max_frames_per_batch,
            seed=args.seed,
            bucket_tolerance=args.bucket_tolerance,
            max_batch_size=args.max_batch_size,
        )
        batching = f"frame budget {args.max_frames_per_batch}"
    else:
        sampler = FixedSizeBatchSampler(len(dataset), args.train_batch_size, seed=args.seed)
        batching = f"{args.train_batch_size} clips"
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=InstructAudioCollator(components["tokenizer"]),
        num_workers=args.dataloader_num_workers,
    )
    facts = {
        **describe_dataset(
            rows["task"],
            rows["duration_s"],
            rows["language"] if "language" in rows.column_names else None,
        ),
        "dataset_dir": os.path.abspath(args.dataset_dir),
        "batching": batching,
    }
    return dataset, sampler, loader, facts


def place_frozen_models(
    components: dict[str, Any], dataset: InstructAudioTrainingDataset, validating: bool, device
):
    """Move the frozen models to the device only where something runs them (the cached paths need neither)."""
    if validating or not dataset.cached_latent_columns:
        components["vae"].to(device)
    if validating or not dataset.cached_instructions:
        components["text_encoder"].to(device)
    if validating:
        components["vocoder"].to(device)


# ---------------------------------------------------------------------------------------------- training
def shareable_args(args: argparse.Namespace) -> argparse.Namespace:
    """The options without secrets, for files and trackers that may end up on the Hub."""
    return argparse.Namespace(**{key: value for key, value in vars(args).items() if key != "hub_token"})


def check_launch(accelerator) -> None:
    """Refuse launches this script would get wrong rather than train on silently."""
    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > accelerator.num_processes:
        # Otherwise each process would train alone, and all of them would write the same output folder.
        raise RuntimeError(
            f"launched as {launched} processes but accelerate set up {accelerator.num_processes}; "
            "on CPU pass --cpu (or set ACCELERATE_USE_CPU=true) to get gloo DDP."
        )
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise ValueError(
            "train_instructaudio.py supports one device and DDP; FSDP/DeepSpeed are not wired up."
        )


def prepare_optimization(args: argparse.Namespace, accelerator, transformer, loader, sampler):
    """AdamW, the learning-rate schedule and the EMA; returns them prepared, with the step count."""
    from diffusers.training_utils import EMAModel

    from instructaudio_diffusers import InstructAudioTransformerModel

    if args.scale_lr:
        # A frame-budget batch has no fixed clip count: scale by accumulation and processes only.
        clips = 1 if args.max_frames_per_batch is not None else args.train_batch_size
        args.learning_rate *= clips * args.gradient_accumulation_steps * accelerator.num_processes
    optimizer = adamw_from_args(args, transformer.parameters())
    model, optimizer, loader = accelerator.prepare(transformer, optimizer, loader)
    max_train_steps = args.max_train_steps
    if max_train_steps is None:
        max_train_steps = 0
        for epoch in range(args.num_train_epochs):  # frame-budget epochs differ slightly in length
            sampler.set_epoch(epoch)
            max_train_steps += updates_per_epoch(len(loader), args.gradient_accumulation_steps)
    lr_scheduler = accelerator.prepare(
        lr_scheduler_from_args(args, optimizer, max_train_steps, accelerator.num_processes)
    )
    ema = None
    if args.use_ema:
        ema = EMAModel(
            accelerator.unwrap_model(model).parameters(),
            decay=args.ema_decay,
            model_cls=InstructAudioTransformerModel,
            model_config=transformer.config,
        )
        ema.to(accelerator.device)
    return model, optimizer, loader, lr_scheduler, ema, max_train_steps


def epoch_loader(accelerator, loader, sampler, epoch: int, skip_batches: int):
    """The loader for `epoch`, past its first `skip_batches` batches (a resumed epoch)."""
    sampler.set_epoch(epoch)
    loader.set_epoch(epoch)
    if not skip_batches:
        return loader
    loader = accelerator.skip_first_batches(loader, skip_batches)
    loader.set_epoch(epoch)
    return loader


def training_step(
    args, objective, accelerator, model, optimizer, lr_scheduler, components, mel_spectrogram, batch, keys
):
    """Forward, backward and (at the end of an accumulation window) clipping and an optimizer step.

    Returns the losses, the frame mask `(B, T)` and the gradient norm (None between optimizer steps).
    """
    device = accelerator.device
    with accelerator.accumulate(model):
        latents, frame_mask = encode_latents(
            batch,
            components["vae"],
            mel_spectrogram,
            keyed_generator(*keys, _RNG_POSTERIOR),
            args.latent_posterior == "sample",
            device,
        )
        instruction_embeds, instruction_mask = encode_instructions(batch, components["text_encoder"], device)
        losses = flow_matching_losses(
            model,
            latents,
            frame_mask,
            instruction_embeds,
            instruction_mask,
            batch["phoneme_ids"],
            batch["phoneme_attention_mask"],
            batch["latent_frames"].to(device),
            objective,
            keyed_generator(*keys, _RNG_FLOW),
            accelerator,
            phoneme_durations=batch.get("phoneme_durations"),
        )
        accelerator.backward(losses["loss"])
        grad_norm = None
        if accelerator.sync_gradients:
            max_norm = args.max_grad_norm if args.max_grad_norm > 0 else float("inf")
            grad_norm = (
                torch.as_tensor(accelerator.clip_grad_norm_(model.parameters(), max_norm)).detach().float()
            )
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return losses, frame_mask, grad_norm


def step_logs(
    accelerator, running: dict[str, list[torch.Tensor]], counts: torch.Tensor, lr_scheduler, elapsed: float
) -> dict[str, float]:
    """Scalars of one optimizer step: losses averaged, clips and frames summed over processes."""
    logs = {
        f"train/{name}": accelerator.reduce(torch.stack(values).mean().to(accelerator.device), "mean").item()
        for name, values in running.items()
    }
    clips, real, padded = accelerator.reduce(counts.to(accelerator.device, torch.float32), "sum").tolist()
    logs["train/lr"] = lr_scheduler.get_last_lr()[0]
    logs["train/samples_per_second"] = clips / max(elapsed, 1e-9)
    logs["train/padding_fraction"] = 1.0 - real / max(padded, 1.0)
    return logs


def main(args: argparse.Namespace) -> TrainingSummary:
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    accelerator = create_accelerator(args)
    check_launch(accelerator)
    # Before anything is loaded or written: a checkpoint that cannot be resumed is refused in seconds.
    checkpoint = find_checkpoint(args.output_dir, args.resume_from_checkpoint)
    set_seed(args.seed)  # the same new transformer on every process
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(Path(args.output_dir, "training_args.json"), vars(shareable_args(args)))

    with accelerator.main_process_first():  # a raw --train_data_dir / --dataset_name is prepared once
        args.dataset_dir = resolve_training_data(args)

    # 1. Models: only the transformer trains.
    components = load_components(args)
    for name in ("vae", "text_encoder", "vocoder"):
        components[name].requires_grad_(False).eval()
    transformer = components["transformer"].train()
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    if components["vae"].config.latents_mean is None:
        logger.warning("The VAE has no latent statistics; its raw latents are used unnormalised.")

    # 2. Data, and the frozen models where they run.
    dataset, sampler, loader, facts = build_training_data(args, components)
    validating = bool(args.validation_instructions) and (
        args.validation_steps > 0 or not args.skip_final_validation
    )
    place_frozen_models(components, dataset, validating and accelerator.is_main_process, accelerator.device)
    mel_spectrogram = components["vae"].mel_spectrogram().to(accelerator.device)
    objective = FlowMatchingObjectiveConfig.from_args(args, components["scheduler"].config)

    # 3. Optimisation, checkpoint hooks, resume.
    model, optimizer, loader, lr_scheduler, ema, max_train_steps = prepare_optimization(
        args, accelerator, transformer, loader, sampler
    )
    register_checkpoint_hooks(accelerator)
    progress = TrainingProgress()
    checkpoint_state = CheckpointState(
        progress,
        ema,
        ema_folder="transformer_ema",
        ema_parameter_names=[name for name, _ in accelerator.unwrap_model(model).named_parameters()],
    )
    if checkpoint is not None:
        load_checkpoint(accelerator, checkpoint, checkpoint_state)
    sampler.set_epoch(progress.epoch)
    epoch, skip_batches = progress.resume_position(len(loader))
    global_step = progress.global_step

    if accelerator.is_main_process:
        accelerator.init_trackers(
            args.tracker_project_name or "train_instructaudio", config=tracker_config(shareable_args(args))
        )
    logger.info(
        "clips=%d (%.3g h), %s x %d accumulation x %d processes, %d steps, starting at step %d",
        facts["clips"],
        facts["hours"],
        facts["batching"],
        args.gradient_accumulation_steps,
        accelerator.num_processes,
        max_train_steps,
        global_step,
    )

    # 4. The loop.
    summary = TrainingSummary(global_step=global_step, output_dir=args.output_dir)
    progress_bar = tqdm(
        range(max_train_steps),
        initial=global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    running: dict[str, list[torch.Tensor]] = {}
    counts = torch.zeros(3, dtype=torch.float64)  # clips, real frames, padded frames of this optimizer step
    step_started = time.perf_counter()
    while global_step < max_train_steps:
        progress.epoch, progress.batches_in_epoch = epoch, skip_batches
        for batch in epoch_loader(accelerator, loader, sampler, epoch, skip_batches):
            keys = (args.seed, epoch, progress.batches_in_epoch, accelerator.process_index)
            losses, frame_mask, grad_norm = training_step(
                args,
                objective,
                accelerator,
                model,
                optimizer,
                lr_scheduler,
                components,
                mel_spectrogram,
                batch,
                keys,
            )
            progress.batches_in_epoch += 1
            for name, value in [
                *losses.items(),
                *([("grad_norm", grad_norm)] if grad_norm is not None else []),
            ]:
                running.setdefault(name, []).append(value.detach().float())
            counts += torch.tensor(
                [len(frame_mask), frame_mask.sum().item(), frame_mask.numel()], dtype=torch.float64
            )
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            progress.global_step = global_step
            if ema is not None:
                ema.step(accelerator.unwrap_model(model).parameters())
            logs = step_logs(accelerator, running, counts, lr_scheduler, time.perf_counter() - step_started)
            running.clear()
            counts.zero_()
            summary.losses.append(logs["train/loss"])
            summary.samples_per_second.append(logs["train/samples_per_second"])
            accelerator.log(logs, step=global_step)
            progress_bar.update(1)
            progress_bar.set_postfix(loss=f"{logs['train/loss']:.4f}", lr=f"{logs['train/lr']:.2e}")

            if global_step % args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator, args.output_dir, global_step, args.checkpoints_total_limit, checkpoint_state
                )
            validation_due = args.validation_steps and global_step % args.validation_steps == 0
            # The last step's samples come from save_final_pipeline, with the same weights: generate them once.
            final_samples_follow = global_step >= max_train_steps and not args.skip_final_validation
            if (
                validation_due
                and not final_samples_follow
                and args.validation_instructions
                and accelerator.is_main_process
            ):
                folder = Path(args.output_dir, "validation", f"step-{global_step}")
                run_validation(accelerator, components, model, ema, args, global_step, folder)
            step_started = time.perf_counter()
            if global_step >= max_train_steps:
                break
        epoch, skip_batches = epoch + 1, 0

    # 5. The pipeline, its samples and model card; the Hub.
    summary.global_step = global_step
    facts.update(
        global_step=global_step,
        epochs=epoch,
        num_processes=accelerator.num_processes,
        distributed_type=str(accelerator.distributed_type),
        mean_samples_per_second=float(np.mean(summary.samples_per_second or [0.0])),
    )
    save_final_pipeline(accelerator, model, ema, components, args, facts)
    del model  # the DDP wrapper goes before the process group (see finish_training)
    finish_training(accelerator)
    if args.push_to_hub and accelerator.is_main_process:
        push_to_hub(args)
    return summary
