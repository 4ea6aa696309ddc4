"""The training objective of the InstructAudio MM-DiT: conditional flow matching over Mel-VAE latents with
classifier-free-guidance condition dropout, plus the duration predictor's loss (see `train`).

Condition dropout `coupling`: "independent" draws the instruction and text drops separately, so only
p_instruction x p_text of the clips train the fully unconditional branch that the pipeline's guidance uses
by default; "nested" draws one number per clip, so every clip that loses its instruction also loses its
text, with the same marginals and min(p_instruction, p_text) of the clips fully unconditional.

Kept apart from the training loop so that benchmarks and tests run exactly the step that training runs.
"""

from __future__ import annotations

import argparse

import torch


def draw_condition_dropout(
    batch_size: int, p_instruction: float, p_text: float, coupling: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(drop_instruction, drop_text)`, bool `(B,)` each; `coupling` is "nested" or "independent" (see above)."""
    if coupling == "nested":
        draw = torch.rand(batch_size, generator=generator)
        return draw < p_instruction, draw < p_text
    draws = torch.rand(2, batch_size, generator=generator)
    return draws[0] < p_instruction, draws[1] < p_text


def apply_condition_dropout(
    instruction_embeds: torch.Tensor,
    instruction_mask: torch.Tensor,
    phoneme_mask: torch.Tensor,
    drop_instruction: torch.Tensor,
    drop_text: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop conditions exactly as the pipeline's unconditional branch: zero embeddings, all tokens masked out."""
    instruction_embeds = instruction_embeds * ~drop_instruction[:, None, None]
    instruction_mask = instruction_mask & ~drop_instruction[:, None]
    return instruction_embeds, instruction_mask, phoneme_mask & ~drop_text[:, None]


def flow_matching_losses(
    model,
    latents: torch.Tensor,
    frame_mask: torch.Tensor,
    instruction_embeds: torch.Tensor,
    instruction_mask: torch.Tensor,
    phoneme_ids: torch.Tensor,
    phoneme_mask: torch.Tensor,
    latent_frames: torch.Tensor,
    args: argparse.Namespace,
    generator: torch.Generator,
    accelerator=None,
    phoneme_durations: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One forward of the objective on a batch; returns `loss` (to backpropagate) and its parts.

    Args:
        latents: `(B, C, T)` normalised clean latents `x0`, zero at padding; `frame_mask` `(B, T)` bool.
        instruction_embeds, instruction_mask: `(B, L, D)`, `(B, L)`; phoneme_ids, phoneme_mask: `(B, P)`.
        latent_frames: `(B,)` true lengths (the duration target of models that predict a total length).
        generator: CPU generator for dropout, sigma and noise (keyed for exact resumes).
        accelerator: when given, the flow-matching mean is taken over the valid elements of all processes.
        phoneme_durations: `(B, P)` latent frames per phoneme (models with `phoneme_alignment="durations"`):
            they place the phonemes on the frames and are the per-token duration target.
    """
    from diffusers.training_utils import compute_density_for_timestep_sampling

    from instructaudio_diffusers import InstructAudioTransformerModel

    device, batch_size = latents.device, latents.shape[0]
    full_phoneme_mask = phoneme_mask
    drop_instruction, drop_text = draw_condition_dropout(
        batch_size, args.instruction_dropout, args.text_dropout, args.dropout_coupling, generator
    )
    drop_instruction, drop_text = drop_instruction.to(device), drop_text.to(device)
    instruction_embeds, instruction_mask, phoneme_mask = apply_condition_dropout(
        instruction_embeds, instruction_mask, phoneme_mask, drop_instruction, drop_text
    )

    sigmas = compute_density_for_timestep_sampling(
        args.weighting_scheme,
        batch_size,
        logit_mean=args.logit_mean,
        logit_std=args.logit_std,
        mode_scale=args.mode_scale,
        generator=generator,
    ).to(device)
    mask = frame_mask[:, None].to(latents.dtype)
    noise = torch.randn(latents.shape, generator=generator).to(device) * mask
    noisy = (1.0 - sigmas[:, None, None]) * latents + sigmas[:, None, None] * noise
    target = noise - latents

    velocity, predicted_durations = model(
        hidden_states=noisy,
        timestep=sigmas * 1000.0,
        encoder_hidden_states=instruction_embeds,
        encoder_attention_mask=instruction_mask,
        phoneme_ids=phoneme_ids,
        phoneme_attention_mask=phoneme_mask,
        audio_attention_mask=frame_mask,
        phoneme_durations=None if phoneme_durations is None else phoneme_durations.to(device),
        return_log_duration=True,
        return_dict=False,
    )
    squared_error = ((velocity.float() - target) ** 2 * mask).sum()
    elements = mask.sum() * latents.shape[1]
    if accelerator is not None and accelerator.num_processes > 1:
        # DDP averages gradients over processes; dividing by the mean element count per process makes the
        # result the mean over every valid element of the global batch, however unevenly it is split.
        elements = accelerator.reduce(elements.detach(), reduction="mean")
    flow_loss = squared_error / elements.clamp(min=1)
    # A clip without its instruction or text would teach the predictor a condition the pipeline never asks.
    conditioned = ~(drop_instruction | drop_text)
    if phoneme_durations is not None:
        duration_loss = InstructAudioTransformerModel.token_duration_loss(
            predicted_durations, phoneme_durations.to(device), full_phoneme_mask, sample_mask=conditioned
        )
    else:
        duration_loss = InstructAudioTransformerModel.duration_loss(
            predicted_durations, latent_frames, sample_mask=conditioned
        )
    return {
        "loss": flow_loss + args.duration_loss_weight * duration_loss,
        "flow_matching_loss": flow_loss,
        "duration_loss": duration_loss,
    }
