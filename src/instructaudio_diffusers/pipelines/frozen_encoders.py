"""The frozen encoders, run one way: by the pipeline, by training on the fly, and by the feature cache.

Training conditions the transformer on what these functions return, either live or from a dataset's cached
columns, and generation on what they return inside the pipeline: one function each keeps the three from
drifting apart (a different padding, truncation or dtype would silently shift what the model sees).
"""

from __future__ import annotations

import torch


def tokenize_instructions(tokenizer, instructions: list[str]):
    """The instruction encoder's tokens: a `BatchEncoding` with `input_ids` and `attention_mask` `(B, L)`,
    padded to the longest instruction and truncated at the encoder's maximum length."""
    return tokenizer(list(instructions), padding=True, truncation=True, return_tensors="pt")


@torch.no_grad()
def run_instruction_encoder(
    text_encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The encoder's `last_hidden_state` `(B, L, D)` for tokens `(B, L)` and their mask `(B, L)` (any dtype)."""
    return text_encoder(input_ids=input_ids, attention_mask=attention_mask.long()).last_hidden_state


@torch.no_grad()
def encode_waveform(vae, mel_spectrogram, waveform: torch.Tensor):
    """The Mel-VAE posterior of one whole clip `(num_samples,)`: a distribution over `(1, C, T)` latents.

    One clip per forward: padding clips to a common length would change their last frames.
    """
    return vae.encode(mel_spectrogram(waveform).to(vae.dtype)).latent_dist
