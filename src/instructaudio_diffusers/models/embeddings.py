"""Positions, rotary tables and the phoneme encoder of the InstructAudio transformer."""

import torch
import torch.nn as nn
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device

from .attention import InstructAudioAttention, InstructAudioFeedForward


def positions_from_mask(attention_mask: torch.BoolTensor) -> torch.LongTensor:
    r"""
    Index of every valid token among the valid tokens of its own sample (0, 1, 2, ...); padding gets 0.

    Counting through the mask instead of using `arange` keeps positions independent of how much padding a batch
    adds and of which side it is on (some instruction tokenizers pad on the left).

    Args:
        attention_mask (`torch.BoolTensor` of shape `(batch_size, seq_len)`): True where valid.

    Returns:
        `torch.LongTensor` of shape `(batch_size, seq_len)`.
    """
    attention_mask = attention_mask.bool()
    return ((attention_mask.long().cumsum(dim=1) - 1) * attention_mask).clamp(min=0)


def rotary_embedding(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    r"""
    Rotary table for per-sample, possibly fractional positions (aligned RoPE places phonemes between frames).

    The table is complex, `exp(i * position * frequency)`, so that applying it is one complex multiplication per
    channel pair ([`~attention.apply_rotary_emb_per_sample`]) instead of the five elementwise kernels of the
    `(cos, sin)` form; the frequencies are diffusers' `get_1d_rotary_pos_embed` ones, with channel pairs
    `(2j, 2j + 1)` (the interleaved layout).

    Args:
        positions (`torch.Tensor` of shape `(batch_size, seq_len)`): positions, any sign, float or integer.
        dim (`int`): the attention head dimension (even).
        theta (`float`): the RoPE base.

    Returns:
        `torch.Tensor` of shape `(batch_size, seq_len, dim // 2)`, complex64.
    """
    # float64 where the device has it (as Flux does): positions reach ~2000 and float32 angles lose precision.
    freqs_dtype = maybe_adjust_dtype_for_device(torch.float64, positions.device)
    freqs_cis = get_1d_rotary_pos_embed(
        dim, positions.reshape(-1).to(freqs_dtype), theta=theta, use_real=False, freqs_dtype=freqs_dtype
    )
    return freqs_cis.to(torch.complex64).reshape(*positions.shape, dim // 2)


class InstructAudioPhonemeEncoderLayer(nn.Module):
    r"""
    Pre-norm transformer layer: masked self-attention with RoPE and QK-RMSNorm, then a (convolutional) FFN.

    Parameters:
        dim (`int`): Width.
        heads (`int`): Attention heads.
        ff_size (`int`): Hidden width of the feed-forward.
        ff_kernel_size (`int`): Temporal kernel of the feed-forward (1: linear MLP).
        eps (`float`): Epsilon of the layer norms and QK-RMSNorms.
    """

    def __init__(self, dim: int, heads: int, ff_size: int, ff_kernel_size: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = InstructAudioAttention(dim, heads, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ff = InstructAudioFeedForward(dim, ff_size, kernel_size=ff_kernel_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.BoolTensor,
        rotary_emb: torch.Tensor,
    ) -> torch.Tensor:
        r"""`hidden_states` `(batch_size, seq_len, dim)`, `attention_mask` `(batch_size, seq_len)`, `rotary_emb`
        `(batch_size, seq_len, head_dim // 2)` complex -> `(batch_size, seq_len, dim)`."""
        hidden_states = hidden_states + self.attn(
            self.norm1(hidden_states), attention_mask=attention_mask, rotary_emb=rotary_emb
        )
        return hidden_states + self.ff(self.norm2(hidden_states), attention_mask)


class InstructAudioPhonemeEncoder(nn.Module):
    r"""
    Phoneme encoder: token embedding (id 0 is padding) + a small transformer + projection to the DiT width.

    The paper uses a 4-layer Zipformer of width 192 with feed-forward 512. This is a plain pre-norm transformer of
    the same size (the agreed deviation); its convolutional feed-forward (`ff_kernel_size=3`) stands in for
    Zipformer's convolution modules. Positions are 0..L2-1 per sample, counted through the mask.

    Parameters:
        vocab_size (`int`): Phoneme vocabulary size, padding id 0 included.
        dim (`int`): Width of the encoder.
        num_layers (`int`): Number of layers.
        heads (`int`): Attention heads.
        ff_size (`int`): Feed-forward hidden width.
        ff_kernel_size (`int`): Temporal kernel of the feed-forward.
        out_dim (`int`): Output width (the DiT hidden size).
        rope_theta (`float`): RoPE base.
        eps (`float`): Epsilon of the norms.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        num_layers: int,
        heads: int,
        ff_size: int,
        ff_kernel_size: int,
        out_dim: int,
        rope_theta: float = 10000.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.rope_theta = rope_theta
        self.token_embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.layers = nn.ModuleList(
            [
                InstructAudioPhonemeEncoderLayer(dim, heads, ff_size, ff_kernel_size, eps)
                for _ in range(num_layers)
            ]
        )
        self.norm_out = nn.LayerNorm(dim, eps=eps)
        self.proj_out = nn.Linear(dim, out_dim)

    def forward(
        self, phoneme_ids: torch.LongTensor, phoneme_attention_mask: torch.BoolTensor
    ) -> torch.Tensor:
        r"""
        Args:
            phoneme_ids (`torch.LongTensor` of shape `(batch_size, phoneme_len)`).
            phoneme_attention_mask (`torch.BoolTensor` of shape `(batch_size, phoneme_len)`): True where valid.

        Returns:
            `torch.Tensor` of shape `(batch_size, phoneme_len, out_dim)`, exactly zero at padded positions.
        """
        if phoneme_ids.shape[1] == 0:  # no text at all (e.g. instrumental music)
            return self.proj_out.weight.new_zeros(*phoneme_ids.shape, self.proj_out.out_features)
        keep = phoneme_attention_mask[..., None]
        hidden_states = self.token_embedding(phoneme_ids) * keep
        head_dim = self.layers[0].attn.head_dim if len(self.layers) else 2
        rotary_emb = rotary_embedding(positions_from_mask(phoneme_attention_mask), head_dim, self.rope_theta)
        for layer in self.layers:
            hidden_states = layer(hidden_states, phoneme_attention_mask, rotary_emb)
        return self.proj_out(self.norm_out(hidden_states)) * keep
