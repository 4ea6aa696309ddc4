"""Attention, feed-forward and transformer blocks of the InstructAudio transformer.

Everything here takes a boolean padding mask and guarantees that padded positions never change a valid
position's output: attention masks padded keys of both streams, and the convolutional feed-forward zeroes
padded positions before every convolution.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from diffusers.utils.torch_utils import maybe_allow_in_graph
from torch.nn.attention import SDPBackend, sdpa_kernel

# torch's SDPA kernels this model lets torch choose from. cuDNN attention is left out: it builds an execution plan
# for every new sequence length (measured on an H200: ~60 ms of host time per call against ~0.05 ms of GPU time),
# and audio lengths change with every training batch and every generation. Left in, bf16 training of the demo
# model ran 0.45 s per step instead of 0.12 s. Other attention backends (`set_attention_backend`) are unaffected.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def key_padding_mask(attention_mask: torch.BoolTensor) -> torch.BoolTensor:
    r"""
    Turn a `(batch_size, key_length)` validity mask into an SDPA boolean mask `(batch_size, 1, 1, key_length)`.

    A sample whose keys are all padding (possible in the phoneme encoder when a sample's text is dropped) would
    give NaN from the softmax, and `0 * NaN` in the value product would then poison the whole batch row. Such a
    sample attends to all of its keys instead: its outputs are padding themselves, zeroed by the caller.
    """
    attention_mask = attention_mask.bool()
    attention_mask = attention_mask | ~attention_mask.any(dim=-1, keepdim=True)
    return attention_mask[:, None, None, :]


def apply_rotary_emb_per_sample(hidden_states: torch.Tensor, rotary_emb: torch.Tensor) -> torch.Tensor:
    r"""
    Rotate `hidden_states` `(batch_size, seq_len, heads, head_dim)` by a per-sample complex table `rotary_emb`
    `(batch_size, seq_len, head_dim // 2)` from [`~embeddings.rotary_embedding`].

    Channel pairs `(2j, 2j + 1)` are rotated as complex numbers (diffusers' interleaved layout, the same rotation as
    `apply_rotary_emb(..., use_real=True, use_real_unbind_dim=-1)`), in float32 as diffusers does. Aligned RoPE gives
    every sample its own phoneme positions, hence a table per sample rather than diffusers' shared one; and one
    complex multiplication is one kernel where the `(cos, sin)` form takes five (unbind, negate, stack, two
    multiplications and an addition), ~5x faster on CPU for the same result.
    """
    pairs = torch.view_as_complex(hidden_states.float().unflatten(-1, (-1, 2)))
    rotated = torch.view_as_real(pairs * rotary_emb[:, :, None, :]).flatten(-2)
    return rotated.type_as(hidden_states)


class InstructAudioAttnProcessor:
    r"""
    Masked self-attention, or MM-DiT joint attention when `encoder_hidden_states` is given, with QK-RMSNorm and
    per-sample rotary embeddings.

    Joint attention projects each stream with its own weights, concatenates `[text ; audio]` along the sequence,
    runs ONE scaled-dot-product attention over it and splits the result back. diffusers' `JointAttnProcessor2_0`
    ignores `attention_mask`, which would let padded phonemes and padded audio frames be attended; here a boolean
    key-padding mask over the concatenated sequence removes the padding of both streams. In a `context_pre_only`
    module the text lends keys and values only and the queries are the audio ones.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: "InstructAudioAttention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.BoolTensor | None = None,
        rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        Args:
            attn (`InstructAudioAttention`): the module holding the projections.
            hidden_states (`torch.Tensor` of shape `(batch_size, seq_len, dim)`): the (audio) stream.
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, text_len, dim)`, *optional*):
                the text stream of joint attention; it comes first in the concatenated sequence.
            attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len + seq_len)`, *optional*):
                True for valid keys, over the concatenated sequence (`seq_len` alone for self-attention).
            rotary_emb (`torch.Tensor` of shape `(batch_size, text_len + seq_len, head_dim // 2)`, *optional*):
                complex rotary table from [`~embeddings.rotary_embedding`].

        Returns:
            `torch.Tensor` of shape `(batch_size, seq_len, dim)` for self-attention; for joint attention the audio
            and text outputs, the text one `None` when the module is `context_pre_only`.
        """
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, -1)))
        key = attn.norm_k(attn.to_k(hidden_states).unflatten(-1, (attn.heads, -1)))
        value = attn.to_v(hidden_states).unflatten(-1, (attn.heads, -1))

        if encoder_hidden_states is not None:
            text_key = attn.add_k_proj(encoder_hidden_states).unflatten(-1, (attn.heads, -1))
            text_value = attn.add_v_proj(encoder_hidden_states).unflatten(-1, (attn.heads, -1))
            key = torch.cat([attn.norm_added_k(text_key), key], dim=1)
            value = torch.cat([text_value, value], dim=1)
            # A context-pre-only block discards the text outputs, so text queries would be dead weights (and
            # unused parameters under DDP): only the audio queries attend.
            if not attn.context_pre_only:
                text_query = attn.add_q_proj(encoder_hidden_states).unflatten(-1, (attn.heads, -1))
                query = torch.cat([attn.norm_added_q(text_query), query], dim=1)

        if rotary_emb is not None:
            # Without text queries (context-pre-only) the queries are the last `seq_len` positions.
            query = apply_rotary_emb_per_sample(query, rotary_emb[:, rotary_emb.shape[1] - query.shape[1] :])
            key = apply_rotary_emb_per_sample(key, rotary_emb)

        attn_mask = key_padding_mask(attention_mask) if attention_mask is not None else None
        with sdpa_kernel(SDPA_BACKENDS):  # inside the processor, so checkpointed recomputation obeys it too
            hidden_states = dispatch_attention_fn(
                query,
                key,
                value,
                attn_mask=attn_mask,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is None:
            return attn.to_out(hidden_states)
        if attn.context_pre_only:
            return attn.to_out(hidden_states), None

        text_len = encoder_hidden_states.shape[1]
        encoder_hidden_states, hidden_states = hidden_states[:, :text_len], hidden_states[:, text_len:]
        return attn.to_out(hidden_states), attn.to_add_out(encoder_hidden_states)


class InstructAudioAttention(nn.Module, AttentionModuleMixin):
    r"""
    Multi-head attention with QK-RMSNorm; with `added_kv=True` a second stream (the text) gets its own Q/K/V and
    output projections for MM-DiT joint attention. The computation lives in the processor
    ([`InstructAudioAttnProcessor`]), as in diffusers' Flux.

    Parameters:
        dim (`int`): Width of the stream(s).
        heads (`int`): Number of attention heads; `dim` must be divisible by it and `dim // heads` even (RoPE).
        added_kv (`bool`, defaults to `False`): Add projections for a second (text) stream.
        context_pre_only (`bool`, defaults to `False`): The text stream only provides keys and values (no text
            queries, no text output projection), since the block that owns this attention discards the text.
        eps (`float`, defaults to `1e-6`): Epsilon of the QK-RMSNorms.
        bias (`bool`, defaults to `True`): Use biases in the projections.
        processor (*optional*): The attention processor; defaults to [`InstructAudioAttnProcessor`].
    """

    _default_processor_cls = InstructAudioAttnProcessor
    _available_processors = [InstructAudioAttnProcessor]
    # The processor reads separate to_q/to_k/to_v, so fused QKV is not offered.
    _supports_qkv_fusion = False

    def __init__(
        self,
        dim: int,
        heads: int,
        added_kv: bool = False,
        context_pre_only: bool = False,
        eps: float = 1e-6,
        bias: bool = True,
        processor=None,
    ):
        super().__init__()
        if dim % heads != 0 or (dim // heads) % 2 != 0:
            raise ValueError(f"`dim` ({dim}) must split into `heads` ({heads}) heads of even size for RoPE.")
        self.heads = heads
        self.head_dim = dim // heads
        self.context_pre_only = context_pre_only

        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(dim, dim, bias=bias)
        self.to_v = nn.Linear(dim, dim, bias=bias)
        self.norm_q = nn.RMSNorm(self.head_dim, eps=eps)
        self.norm_k = nn.RMSNorm(self.head_dim, eps=eps)
        self.to_out = nn.Linear(dim, dim, bias=bias)

        if added_kv:
            self.add_k_proj = nn.Linear(dim, dim, bias=bias)
            self.add_v_proj = nn.Linear(dim, dim, bias=bias)
            self.norm_added_k = nn.RMSNorm(self.head_dim, eps=eps)
            if not context_pre_only:
                self.add_q_proj = nn.Linear(dim, dim, bias=bias)
                self.norm_added_q = nn.RMSNorm(self.head_dim, eps=eps)
                self.to_add_out = nn.Linear(dim, dim, bias=bias)

        self.set_processor(processor if processor is not None else self._default_processor_cls())

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.BoolTensor | None = None,
        rotary_emb: torch.Tensor | None = None,
    ):
        r"""See [`InstructAudioAttnProcessor.__call__`] for shapes."""
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


class InstructAudioFeedForward(nn.Module):
    r"""
    Position-wise feed-forward `dim -> inner_dim -> dim` with tanh-GELU.

    `kernel_size=1` is the usual linear MLP. `kernel_size=3` is M3-TTS's convolutional FFN: both layers are 1-D
    convolutions over time, which gives every block local context. Padded positions are zeroed before each
    convolution, so a valid position next to padding sees the same zeros as at the end of an unpadded sequence.

    Parameters:
        dim (`int`): Input and output width.
        inner_dim (`int`): Hidden width.
        kernel_size (`int`, defaults to `1`): Odd temporal kernel size of both layers.
    """

    def __init__(self, dim: int, inner_dim: int, kernel_size: int = 1):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd number, got {kernel_size}.")
        self.kernel_size = kernel_size
        if kernel_size == 1:
            self.proj_in = nn.Linear(dim, inner_dim)
            self.proj_out = nn.Linear(inner_dim, dim)
        else:
            self.proj_in = nn.Conv1d(dim, inner_dim, kernel_size, padding=kernel_size // 2)
            self.proj_out = nn.Conv1d(inner_dim, dim, kernel_size, padding=kernel_size // 2)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.BoolTensor | None = None
    ) -> torch.Tensor:
        r"""
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, seq_len, dim)`).
            attention_mask (`torch.BoolTensor` of shape `(batch_size, seq_len)`, *optional*): True where valid.

        Returns:
            `torch.Tensor` of shape `(batch_size, seq_len, dim)`.
        """
        if self.kernel_size == 1:
            return self.proj_out(F.gelu(self.proj_in(hidden_states), approximate="tanh"))

        keep = None if attention_mask is None else attention_mask[:, None, :].to(hidden_states.dtype)
        hidden_states = hidden_states.transpose(1, 2)
        if keep is not None:
            hidden_states = hidden_states * keep
        hidden_states = F.gelu(self.proj_in(hidden_states), approximate="tanh")
        if keep is not None:
            hidden_states = hidden_states * keep
        return self.proj_out(hidden_states).transpose(1, 2)


@maybe_allow_in_graph
class InstructAudioJointTransformerBlock(nn.Module):
    r"""
    Two-stream MM-DiT block: per-stream AdaLN-Zero (timestep-modulated), joint attention over `[text ; audio]`,
    per-stream FFN. With `context_pre_only` the text stream only lends keys and values (as in SD3's last block).

    Parameters:
        dim (`int`): Width of both streams.
        num_attention_heads (`int`): Attention heads.
        ff_inner_dim (`int`): FFN hidden width.
        ff_kernel_size (`int`): FFN temporal kernel (1: linear MLP, 3: convolutional FFN).
        context_pre_only (`bool`, defaults to `False`): Do not update the text stream.
        qk_norm_eps (`float`, defaults to `1e-6`): Epsilon of the QK-RMSNorms.
        norm_eps (`float`, defaults to `1e-6`): Epsilon of the layer norms.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        ff_inner_dim: int,
        ff_kernel_size: int,
        context_pre_only: bool = False,
        qk_norm_eps: float = 1e-6,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.context_pre_only = context_pre_only
        self.norm1 = AdaLayerNormZero(dim)
        if context_pre_only:
            self.norm1_context = AdaLayerNormContinuous(dim, dim, elementwise_affine=False, eps=norm_eps)
        else:
            self.norm1_context = AdaLayerNormZero(dim)
        self.attn = InstructAudioAttention(
            dim, num_attention_heads, added_kv=True, context_pre_only=context_pre_only, eps=qk_norm_eps
        )
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
        self.ff = InstructAudioFeedForward(dim, ff_inner_dim, ff_kernel_size)
        if not context_pre_only:
            self.norm2_context = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
            self.ff_context = InstructAudioFeedForward(dim, ff_inner_dim, ff_kernel_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        attention_mask: torch.BoolTensor,
        rotary_emb: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        r"""
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, latent_frames, dim)`): audio stream.
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, text_len, dim)`): text stream.
            temb (`torch.Tensor` of shape `(batch_size, dim)`): timestep embedding.
            attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len + latent_frames)`): valid tokens.
            rotary_emb (`torch.Tensor` of shape `(batch_size, text_len + latent_frames, head_dim // 2)`): complex
                rotary table.

        Returns:
            `(encoder_hidden_states, hidden_states)`; the text stream is `None` when `context_pre_only`.
        """
        text_len = encoder_hidden_states.shape[1]
        text_mask, audio_mask = attention_mask[:, :text_len], attention_mask[:, text_len:]

        norm_hidden_states, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=temb)
        if self.context_pre_only:
            norm_encoder_hidden_states = self.norm1_context(encoder_hidden_states, temb)
        else:
            norm_encoder_hidden_states, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(
                encoder_hidden_states, emb=temb
            )

        attn_output, context_attn_output = self.attn(
            norm_hidden_states,
            norm_encoder_hidden_states,
            attention_mask=attention_mask,
            rotary_emb=rotary_emb,
        )

        hidden_states = hidden_states + gate_msa[:, None] * attn_output
        norm_hidden_states = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        hidden_states = hidden_states + gate_mlp[:, None] * self.ff(norm_hidden_states, audio_mask)
        if hidden_states.dtype == torch.float16:
            hidden_states = hidden_states.clip(-65504, 65504)

        if self.context_pre_only:
            return None, hidden_states

        encoder_hidden_states = encoder_hidden_states + c_gate_msa[:, None] * context_attn_output
        norm_encoder_hidden_states = (
            self.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
        )
        encoder_hidden_states = encoder_hidden_states + c_gate_mlp[:, None] * self.ff_context(
            norm_encoder_hidden_states, text_mask
        )
        if encoder_hidden_states.dtype == torch.float16:
            encoder_hidden_states = encoder_hidden_states.clip(-65504, 65504)
        return encoder_hidden_states, hidden_states


@maybe_allow_in_graph
class InstructAudioSingleTransformerBlock(nn.Module):
    r"""
    Audio-only DiT block: AdaLN-Zero, masked self-attention with RoPE and QK-RMSNorm, FFN.

    Parameters:
        dim (`int`): Width.
        num_attention_heads (`int`): Attention heads.
        ff_inner_dim (`int`): FFN hidden width.
        ff_kernel_size (`int`): FFN temporal kernel.
        qk_norm_eps (`float`, defaults to `1e-6`): Epsilon of the QK-RMSNorms.
        norm_eps (`float`, defaults to `1e-6`): Epsilon of the layer norm.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        ff_inner_dim: int,
        ff_kernel_size: int,
        qk_norm_eps: float = 1e-6,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)
        self.attn = InstructAudioAttention(dim, num_attention_heads, eps=qk_norm_eps)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
        self.ff = InstructAudioFeedForward(dim, ff_inner_dim, ff_kernel_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        attention_mask: torch.BoolTensor,
        rotary_emb: torch.Tensor,
    ) -> torch.Tensor:
        r"""`hidden_states` `(batch_size, latent_frames, dim)`, `temb` `(batch_size, dim)`, `attention_mask`
        `(batch_size, latent_frames)`, `rotary_emb` `(batch_size, latent_frames, head_dim // 2)` complex."""
        norm_hidden_states, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=temb)
        attn_output = self.attn(norm_hidden_states, attention_mask=attention_mask, rotary_emb=rotary_emb)
        hidden_states = hidden_states + gate_msa[:, None] * attn_output
        norm_hidden_states = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        hidden_states = hidden_states + gate_mlp[:, None] * self.ff(norm_hidden_states, attention_mask)
        if hidden_states.dtype == torch.float16:
            hidden_states = hidden_states.clip(-65504, 65504)
        return hidden_states
