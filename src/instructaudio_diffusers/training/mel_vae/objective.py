"""The Mel-VAE's training objective: the wrapped model, the patch discriminator and the loss terms.

Kept apart from `train` so that it reads as the training procedure; see its docstring
for the objective as a whole.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MelVAEObjectiveConfig:
    """Every term of the Mel-VAE's objective, built once from the options (`from_args`).

    Args:
        kl_weight: weight of the KL term (LDM normalisation: per-sample sums divided by the mel elements).
        multiscale_pooling: time-pooling factors of the multiscale L1 (none: off).
        multiscale_weight: weight of the multiscale L1.
        adversarial_weight: weight of the hinge generator loss, once the discriminator is on.
    """

    kl_weight: float
    multiscale_pooling: tuple[int, ...]
    multiscale_weight: float
    adversarial_weight: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MelVAEObjectiveConfig:
        return cls(
            kl_weight=args.kl_weight,
            multiscale_pooling=tuple(args.multiscale_pooling),
            multiscale_weight=args.multiscale_weight,
            adversarial_weight=args.adversarial_weight,
        )


class MelVAETrainingModule(nn.Module):
    """The VAE behind one `forward`, so DDP/FSDP see encode + decode as a single wrapped call."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        # FSDP's transformer-based wrap policy reads this from the model it is given: shard per VAE block.
        self._no_split_modules = list(getattr(vae, "_no_split_modules", None) or [])

    def forward(
        self, mel: torch.Tensor, generator: torch.Generator | None = None, sample_posterior: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, n_mels, T)` log-mel -> `(reconstruction (B, n_mels, T), KL per sample (B,))`."""
        posterior = self.vae.encode(mel).latent_dist
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.vae.decode(latents, num_frames=mel.shape[-1]).sample, posterior.kl()


class MelPatchDiscriminator(nn.Module):
    """1-D convolutional patch discriminator over log-mel frames: `(B, n_mels, T)` -> logits `(B, 1, T')`.

    Each logit judges a window of ~`4 * 2**num_layers` frames, so it scores local texture (the
    smearing L1 leaves) rather than the whole clip.
    """

    def __init__(self, n_mels: int, channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(n_mels, channels, 5, padding=2), nn.LeakyReLU(0.2)]
        width = channels
        for _ in range(num_layers):
            layers += [nn.Conv1d(width, min(width * 2, 512), 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
            width = min(width * 2, 512)
        layers.append(nn.Conv1d(width, 1, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.layers(mel)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over valid frames; `frame_mask` is `(B, T)` bool."""
    mask = frame_mask[:, None, :].to(prediction.dtype)
    return ((prediction - target).abs() * mask).sum() / (mask.sum() * prediction.shape[1]).clamp(min=1)


def reconstruction_losses(
    reconstruction: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor, pooling: list[int]
) -> dict[str, torch.Tensor]:
    """L1 at full resolution and, averaged over `pooling` factors, on time-pooled log-mels.

    Pooled L1 weighs slow envelope errors (level, formant tracks) that frame-wise L1 under-counts.
    """
    losses = {"l1": masked_l1(reconstruction, target, frame_mask)}
    if pooling:
        pooled = []
        for factor in pooling:
            if target.shape[-1] < factor:
                continue
            # A pooled frame counts only when every frame it averages is real audio.
            pooled_mask = F.max_pool1d((~frame_mask).float()[:, None], factor)[:, 0] == 0
            pooled.append(
                masked_l1(F.avg_pool1d(reconstruction, factor), F.avg_pool1d(target, factor), pooled_mask)
            )
        if pooled:
            losses["multiscale_l1"] = torch.stack(pooled).mean()
    return losses


def generator_adversarial_loss(discriminator: nn.Module, reconstruction: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss through the *unwrapped* discriminator with its parameters frozen.

    Frozen parameters keep these gradients out of the discriminator's accumulated gradients, and
    calling the unwrapped module keeps DDP from expecting a gradient reduction for this pass.
    """
    discriminator.requires_grad_(False)
    try:
        return -discriminator(reconstruction).mean()
    finally:
        discriminator.requires_grad_(True)


def discriminator_hinge_loss(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Hinge loss on real and (detached) fake log-mels, scored in one forward (one DDP pass per backward)."""
    logits_real, logits_fake = discriminator(torch.cat([real, fake.detach()])).float().chunk(2)
    return F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean()


def vae_losses(
    accelerator,
    model: nn.Module,
    discriminator: nn.Module | None,
    mel: torch.Tensor,
    frame_mask: torch.Tensor,
    generator: torch.Generator,
    config: MelVAEObjectiveConfig,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The VAE's objective on one batch (see the module docstring).

    Args:
        discriminator: the *unwrapped* discriminator when the adversarial term is on, else `None`.

    Returns:
        `(losses, fake)`: every term plus their weighted sum under "loss", and the reconstruction with
        padding frames replaced by the target's, as the discriminator should see it.
    """
    reconstruction, kl = model(mel, generator=generator)
    reconstruction = reconstruction.float()
    losses = reconstruction_losses(reconstruction, mel, frame_mask, list(config.multiscale_pooling))
    losses["kl"] = kl.float().mean() / mel[0].numel()
    loss = losses["l1"] + config.kl_weight * losses["kl"]
    if "multiscale_l1" in losses:
        loss = loss + config.multiscale_weight * losses["multiscale_l1"]
    fake = torch.where(frame_mask[:, None], reconstruction, mel)
    if discriminator is not None:
        with accelerator.autocast():
            losses["generator_adversarial"] = generator_adversarial_loss(discriminator, fake).float()
        loss = loss + config.adversarial_weight * losses["generator_adversarial"]
    losses["loss"] = loss
    return losses, fake
