"""The training objective of the InstructAudio MM-DiT: conditional flow matching over Mel-VAE latents with
classifier-free-guidance condition dropout, plus the duration predictor's loss (see `train`).

Everything the objective depends on is in `FlowMatchingObjectiveConfig`, built once from the options and the
scheduler's configuration, so that the loss never reads the command line and the transformer's timestep scale
is the one the pipeline's scheduler uses.

Condition dropout `coupling`: "independent" draws the instruction and text drops separately, so only
p_instruction x p_text of the clips train the fully unconditional branch that the pipeline's guidance uses
by default; "nested" draws one number per clip, so every clip that loses its instruction also loses its
text, with the same marginals and min(p_instruction, p_text) of the clips fully unconditional.

Kept apart from the training loop so that benchmarks and tests run exactly the step that training runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlowMatchingObjectiveConfig:
    """Every term of the MM-DiT's objective.

    Args:
        instruction_dropout, text_dropout: probability that a clip's instruction / text is masked out.
        dropout_coupling: "nested" or "independent" (see the module docstring).
        weighting_scheme, logit_mean, logit_std, mode_scale: how sigma is drawn (diffusers'
            `compute_density_for_timestep_sampling`; "uniform" is the paper's t ~ U[0, 1)).
        duration_loss_weight: weight of the duration predictor's loss next to the flow-matching loss.
        num_train_timesteps: the scheduler's timestep scale: the transformer sees `sigma * num_train_timesteps`,
            as it does inside the pipeline.
    """

    instruction_dropout: float
    text_dropout: float
    dropout_coupling: str
    weighting_scheme: str
    logit_mean: float
    logit_std: float
    mode_scale: float
    duration_loss_weight: float
    num_train_timesteps: int = 1000

    @classmethod
    def from_args(cls, args: argparse.Namespace, scheduler_config=None) -> FlowMatchingObjectiveConfig:
        """The objective of `train_instructaudio.py`'s options; `scheduler_config` (the pipeline scheduler's
        `config`) gives the timestep scale, diffusers' FlowMatch default of 1000 when omitted."""
        timesteps = getattr(scheduler_config, "num_train_timesteps", None) or 1000
        return cls(
            instruction_dropout=args.instruction_dropout,
            text_dropout=args.text_dropout,
            dropout_coupling=args.dropout_coupling,
            weighting_scheme=args.weighting_scheme,
            logit_mean=args.logit_mean,
            logit_std=args.logit_std,
            mode_scale=args.mode_scale,
            duration_loss_weight=args.duration_loss_weight,
            num_train_timesteps=int(timesteps),
        )


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
    config: FlowMatchingObjectiveConfig,
    generator: torch.Generator,
    accelerator=None,
    phoneme_durations: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One forward of the objective on a batch; returns `loss` (to backpropagate) and its parts.

    Args:
        latents: `(B, C, T)` normalised clean latents `x0`, zero at padding; `frame_mask` `(B, T)` bool.
        instruction_embeds, instruction_mask: `(B, L, D)`, `(B, L)`; phoneme_ids, phoneme_mask: `(B, P)`.
        latent_frames: `(B,)` true lengths (the duration target of models that predict a total length).
        config: the objective's terms (`FlowMatchingObjectiveConfig.from_args`).
        generator: CPU generator for dropout, sigma and noise (keyed for exact resumes).
        accelerator: when given, the flow-matching mean is taken over the valid elements of all processes.
        phoneme_durations: `(B, P)` latent frames per phoneme (models with `phoneme_alignment="durations"`):
            they place the phonemes on the frames and are the per-token duration target.
    """
    from diffusers.training_utils import compute_density_for_timestep_sampling

    device, batch_size = latents.device, latents.shape[0]
    full_phoneme_mask = phoneme_mask
    drop_instruction, drop_text = draw_condition_dropout(
        batch_size, config.instruction_dropout, config.text_dropout, config.dropout_coupling, generator
    )
    drop_instruction, drop_text = drop_instruction.to(device), drop_text.to(device)
    instruction_embeds, instruction_mask, phoneme_mask = apply_condition_dropout(
        instruction_embeds, instruction_mask, phoneme_mask, drop_instruction, drop_text
    )

    sigmas = compute_density_for_timestep_sampling(
        config.weighting_scheme,
        batch_size,
        logit_mean=config.logit_mean,
        logit_std=config.logit_std,
        mode_scale=config.mode_scale,
        generator=generator,
    ).to(device)
    mask = frame_mask[:, None].to(latents.dtype)
    noise = torch.randn(latents.shape, generator=generator).to(device) * mask
    noisy = (1.0 - sigmas[:, None, None]) * latents + sigmas[:, None, None] * noise
    target = noise - latents

    velocity, predicted_durations = model(
        hidden_states=noisy,
        timestep=sigmas * float(config.num_train_timesteps),
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
        duration_loss = token_duration_loss(
            predicted_durations, phoneme_durations.to(device), full_phoneme_mask, sample_mask=conditioned
        )
    else:
        duration_loss = total_duration_loss(predicted_durations, latent_frames, sample_mask=conditioned)
    return {
        "loss": flow_loss + config.duration_loss_weight * duration_loss,
        "flow_matching_loss": flow_loss,
        "duration_loss": duration_loss,
    }


def token_duration_loss(
    predicted_log_durations: torch.Tensor,
    target_durations: torch.Tensor,
    phoneme_mask: torch.Tensor,
    sample_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error of `log(1 + frames)` over the valid phonemes (Matcha-TTS' duration loss; the `1 +`
    admits the zero-length tags and word boundaries), for models with `phoneme_alignment="durations"`.

    Args:
        predicted_log_durations: `(B, P)` from the model.
        target_durations: `(B, P)` latent frames per phoneme.
        phoneme_mask: `(B, P)` valid phonemes.
        sample_mask: `(B,)` which samples count; all when omitted.

    Returns:
        Scalar `torch.Tensor` (float32).
    """
    weights = phoneme_mask.float()
    if sample_mask is not None:
        weights = weights * sample_mask.float()[:, None]
    error = (predicted_log_durations.float() - torch.log1p(target_durations.float())) ** 2
    return (error * weights).sum() / weights.sum().clamp(min=1)


def total_duration_loss(
    predicted_log_frames: torch.Tensor, target_frames: torch.Tensor, sample_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 loss in log space, `|predicted_log_frames - log(target_frames)|`, for models that predict a clip's total
    length: the error is a ratio, so a 10 % miss costs the same for a 2 s and a 20 s clip, and L1 keeps outliers
    (long pauses) from dominating.

    Args:
        predicted_log_frames: `(B,)` from the model's `predict_duration`.
        target_frames: `(B,)` true numbers of latent frames (>= 1).
        sample_mask: `(B,)` which samples count, e.g. excluding samples whose text was dropped; all when omitted.

    Returns:
        Scalar `torch.Tensor` (float32).
    """
    target = torch.log(target_frames.float().clamp(min=1))
    error = (predicted_log_frames.float() - target).abs()
    if sample_mask is None:
        return error.mean()
    weights = sample_mask.float()
    return (error * weights).sum() / weights.sum().clamp(min=1)
