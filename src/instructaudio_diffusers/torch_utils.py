"""Small tensor helpers that the models, the pipeline and training share."""

from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """`(B,)` lengths -> `(B, max_length)` boolean mask, True on valid positions."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]
