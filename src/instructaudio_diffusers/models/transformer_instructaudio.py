"""InstructAudio's MM-DiT: a flow-matching velocity model over Mel-VAE latents, conditioned on an instruction and
phonemes through joint attention (Qiang et al., arXiv 2511.18487)."""

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from .attention import InstructAudioJointTransformerBlock, InstructAudioSingleTransformerBlock
from .embeddings import InstructAudioPhonemeEncoder, positions_from_mask, rotary_embedding

# Kinds of text-stream tokens, stored in `InstructAudioTextCondition.token_types`.
TEXT_TOKEN_REGISTER = 0
TEXT_TOKEN_INSTRUCTION = 1
TEXT_TOKEN_PHONEME = 2


@dataclass
class InstructAudioTransformerOutput(BaseOutput):
    r"""
    Output of [`InstructAudioTransformerModel`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, in_channels, latent_frames)`):
            The predicted velocity `noise - x0`; exactly zero at padded audio frames.
        predicted_log_frames (`torch.Tensor` of shape `(batch_size,)`, *optional*):
            The duration predictor's log number of latent frames, when asked for with `return_log_duration=True`.
    """

    sample: torch.Tensor
    predicted_log_frames: torch.Tensor | None = None


@dataclass
class InstructAudioTextCondition(BaseOutput):
    r"""
    The timestep-independent text stream, computed once per generation by
    [`InstructAudioTransformerModel.encode_text_condition`] and passed to every denoising step.

    The stream is `[register ; instruction ; phonemes]` with each sample's valid tokens packed to the front (see
    the model docstring), so `text_len` is the largest number of valid tokens in the batch.

    Args:
        hidden_states (`torch.Tensor` of shape `(batch_size, text_len, hidden_size)`): zero at padding.
        attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len)`): True for valid tokens.
        positions (`torch.Tensor` of shape `(batch_size, text_len)`, float): RoPE positions of register and
            instruction tokens; for phoneme tokens the fraction `k / num_phonemes` of the utterance, scaled by each
            sample's number of audio frames inside `forward` (aligned RoPE).
        token_types (`torch.LongTensor` of shape `(batch_size, text_len)`): `TEXT_TOKEN_REGISTER`,
            `TEXT_TOKEN_INSTRUCTION` or `TEXT_TOKEN_PHONEME`; meaningless at padding.
    """

    hidden_states: torch.Tensor
    attention_mask: torch.BoolTensor
    positions: torch.Tensor
    token_types: torch.LongTensor

    @classmethod
    def cat(cls, conditions: list["InstructAudioTextCondition"]) -> "InstructAudioTextCondition":
        r"""Concatenate along the batch (e.g. conditional and unconditional for classifier-free guidance),
        right-padding the shorter ones."""
        text_len = max(condition.hidden_states.shape[1] for condition in conditions)

        def pad(tensor: torch.Tensor) -> torch.Tensor:
            padding = [0, 0] * (tensor.ndim - 2) + [0, text_len - tensor.shape[1]]
            return nn.functional.pad(tensor, padding)

        return cls(
            hidden_states=torch.cat([pad(c.hidden_states) for c in conditions]),
            attention_mask=torch.cat([pad(c.attention_mask) for c in conditions]),
            positions=torch.cat([pad(c.positions) for c in conditions]),
            token_types=torch.cat([pad(c.token_types) for c in conditions]),
        )


def _pack_valid_first(
    attention_mask: torch.BoolTensor, *tensors: torch.Tensor
) -> tuple[torch.BoolTensor, list[torch.Tensor]]:
    r"""
    Move each sample's valid tokens to the front (order kept) and cut the common padding tail.

    With instruction padding in the middle of `[register ; instruction ; phonemes]`, a convolutional FFN at the
    last instruction token would see zeros in a batch but the first phoneme when run alone; packing makes the
    stream identical up to trailing padding, so batching never changes a sample's result.
    """
    order = torch.argsort((~attention_mask).to(torch.int8), dim=1, stable=True)
    text_len = int(attention_mask.sum(dim=1).max())
    order = order[:, :text_len]
    packed = []
    for tensor in tensors:
        index = order.reshape(*order.shape, *([1] * (tensor.ndim - 2))).expand(-1, -1, *tensor.shape[2:])
        packed.append(torch.gather(tensor, 1, index))
    return torch.gather(attention_mask, 1, order), packed


class InstructAudioDurationPredictor(nn.Module):
    r"""
    Predicts the log number of latent frames from the masked means of the instruction and phoneme tokens of the
    text stream, plus the phoneme count.

    The MLP predicts a log speaking rate that is added to `log(num_phonemes)`, so the count, which mean pooling
    would lose, sets the scale; samples without phonemes (instrumental music, dropped text) use the MLP alone.

    Parameters:
        dim (`int`): Width of the text stream.
        hidden_size (`int`): Hidden width of the MLP.
    """

    def __init__(self, dim: int, hidden_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(2 * dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim + 1, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, text_condition: InstructAudioTextCondition) -> torch.Tensor:
        r"""Returns the predicted log number of latent frames, `torch.Tensor` of shape `(batch_size,)`, float32."""
        # Detached: the duration objective must not pull the shared text encoders away from what the velocity
        # field needs; the head still trains in the same step as the rest of the model.
        hidden_states = text_condition.hidden_states.detach()
        valid = text_condition.attention_mask
        pooled, num_phonemes = [], None
        # Counts, pooling and logs in float32: in bf16 integers above 256 are inexact and log(count) moves in
        # ~3 % steps, which would quantise every predicted duration.
        for token_type in (TEXT_TOKEN_INSTRUCTION, TEXT_TOKEN_PHONEME):
            weights = (valid & (text_condition.token_types == token_type))[..., None].float()
            count = weights.sum(dim=1)
            pooled.append((hidden_states.float() * weights).sum(dim=1) / count.clamp(min=1))
            num_phonemes = count
        features = torch.cat(pooled, dim=-1).to(hidden_states.dtype)
        features = torch.cat([self.norm(features), torch.log1p(num_phonemes).to(hidden_states.dtype)], dim=-1)
        return self.mlp(features).squeeze(-1).float() + torch.log(num_phonemes.squeeze(-1).clamp(min=1))


class InstructAudioTransformerModel(ModelMixin, ConfigMixin, AttentionMixin):
    r"""
    The InstructAudio MM-DiT (arXiv 2511.18487): predicts the flow-matching velocity of Mel-VAE latents from an
    instruction embedding and phonemes.

    Data flow: the instruction hidden states (from a frozen LLM) are RMS-normalised and projected to
    `hidden_size`; phonemes go through a small transformer encoder and a projection. The text stream is
    `C_text = [register ; instruction ; phonemes]`. `num_joint_layers` two-stream blocks attend jointly over
    `[C_text ; audio]` (the last one updates audio only), `num_single_layers` blocks attend over audio alone, and a
    final AdaLN + zero-initialised projection gives the velocity, exactly 0 at initialisation.

    Decisions not fixed by the paper:
        - Register token: a learned token at the start of the text stream is always valid, so the joint
          attention always has a text key even when a sample's instruction mask or phoneme mask is all False
          (classifier-free guidance drops); outputs stay finite and the unconditional branch has a learned anchor.
        - RoPE positions (theta `rope_theta`): audio frames 0..T_i-1; phoneme k at `k * T_i / L2_i` (aligned RoPE,
          per sample, from the masks); instruction tokens at -L1_i..-1, i.e. just before the audio like a prompt
          prefix, so they never share positions with frames or phonemes; the register token at -L1_i - 1.
        - Packing: each sample's valid text tokens are moved to the front of the stream before the blocks, so the
          convolutional FFN sees the same neighbours whatever padding the batch adds.
        - Duration predictor: see [`InstructAudioDurationPredictor`]; it reads a detached text stream.
        - Stretched phoneme input (`stretched_phoneme_input=True`, off in the paper configuration): an alignment
          aid for small training budgets. Each audio frame also receives (through a linear layer) the encoded
          phoneme that a uniform speaking rate would put there, phoneme `k` of `L2` covering frames
          `[k T / L2, (k + 1) T / L2)`; attention still learns the real alignment. Samples whose phonemes are
          dropped (classifier-free guidance) receive nothing.
        - AdaLN modulations and the output layer are zero-initialised (DiT's AdaLN-Zero): each block starts as the
          identity and, at the first step, only `proj_out` receives gradient; the rest follows from the next step.
        - Size: the paper configuration (`configs/paper/transformer`) has 1.19 B parameters against the paper's
          1.34 B. M3-TTS's public code spends the difference on convolutional (kernel 3) attention output
          projections and a kernel-7 convolutional input stack, which this model replaces by linear layers.

    Parameters:
        in_channels (`int`, defaults to `40`): Latent channels C of the Mel-VAE.
        num_joint_layers (`int`, defaults to `14`): Two-stream (text + audio) blocks; at least 1.
        num_single_layers (`int`, defaults to `6`): Audio-only blocks.
        hidden_size (`int`, defaults to `1024`): Width D of both streams.
        num_attention_heads (`int`, defaults to `16`): Attention heads of the DiT blocks.
        ff_mult (`float`, defaults to `4.0`): FFN hidden width as a multiple of `hidden_size`.
        ff_kernel_size (`int`, defaults to `3`): FFN temporal kernel: 1 = linear GELU MLP, 3 = convolutional FFN
            (M3-TTS).
        instruction_dim (`int`, defaults to `3584`): Width of the instruction encoder's hidden states
            (Qwen2.5-7B: 3584; all-MiniLM-L6-v2: 384).
        phoneme_vocab_size (`int`, defaults to `512`): Phoneme vocabulary size; id 0 is padding.
        phoneme_encoder_layers (`int`, defaults to `4`): Layers of the phoneme encoder.
        phoneme_encoder_hidden_size (`int`, defaults to `192`): Width of the phoneme encoder.
        phoneme_encoder_heads (`int`, defaults to `4`): Attention heads of the phoneme encoder.
        phoneme_encoder_ff_size (`int`, defaults to `512`): FFN hidden width of the phoneme encoder.
        phoneme_encoder_ff_kernel_size (`int`, defaults to `3`): FFN temporal kernel of the phoneme encoder.
        rope_theta (`float`, defaults to `10000.0`): RoPE base, for the DiT and the phoneme encoder.
        max_audio_frames (`int`, defaults to `2048`): Longest latent sequence accepted (2048 frames = 47.6 s at
            43 Hz); pipelines use it to reject absurd lengths.
        duration_predictor_hidden_size (`int`, defaults to `256`): Hidden width of the duration predictor.
        timestep_embedding_dim (`int`, defaults to `256`): Sinusoidal channels of the timestep embedding.
        qk_norm_eps (`float`, defaults to `1e-6`): Epsilon of the QK-RMSNorms.
        norm_eps (`float`, defaults to `1e-6`): Epsilon of the layer norms and the instruction RMSNorm.
        stretched_phoneme_input (`bool`, defaults to `False`): Add the linearly stretched phoneme encodings to the
            audio input (see above); the demo configuration turns it on.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = [
        "InstructAudioJointTransformerBlock",
        "InstructAudioSingleTransformerBlock",
        "InstructAudioPhonemeEncoderLayer",
    ]
    _skip_layerwise_casting_patterns = ["norm", "time_embedder", "token_embedding"]
    _repeated_blocks = ["InstructAudioJointTransformerBlock", "InstructAudioSingleTransformerBlock"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 40,
        num_joint_layers: int = 14,
        num_single_layers: int = 6,
        hidden_size: int = 1024,
        num_attention_heads: int = 16,
        ff_mult: float = 4.0,
        ff_kernel_size: int = 3,
        instruction_dim: int = 3584,
        phoneme_vocab_size: int = 512,
        phoneme_encoder_layers: int = 4,
        phoneme_encoder_hidden_size: int = 192,
        phoneme_encoder_heads: int = 4,
        phoneme_encoder_ff_size: int = 512,
        phoneme_encoder_ff_kernel_size: int = 3,
        rope_theta: float = 10000.0,
        max_audio_frames: int = 2048,
        duration_predictor_hidden_size: int = 256,
        timestep_embedding_dim: int = 256,
        qk_norm_eps: float = 1e-6,
        norm_eps: float = 1e-6,
        stretched_phoneme_input: bool = False,
    ):
        super().__init__()
        if num_joint_layers < 1:
            raise ValueError(
                "`num_joint_layers` must be at least 1: the text reaches the audio only through them."
            )
        ff_inner_dim = int(hidden_size * ff_mult)

        self.time_proj = Timesteps(timestep_embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(timestep_embedding_dim, hidden_size)

        # LLM hidden states carry a few channels with very large magnitudes: normalise before projecting.
        self.instruction_norm = nn.RMSNorm(instruction_dim, eps=norm_eps)
        self.instruction_proj = nn.Linear(instruction_dim, hidden_size)
        self.phoneme_encoder = InstructAudioPhonemeEncoder(
            vocab_size=phoneme_vocab_size,
            dim=phoneme_encoder_hidden_size,
            num_layers=phoneme_encoder_layers,
            heads=phoneme_encoder_heads,
            ff_size=phoneme_encoder_ff_size,
            ff_kernel_size=phoneme_encoder_ff_kernel_size,
            out_dim=hidden_size,
            rope_theta=rope_theta,
            eps=norm_eps,
        )
        self.text_register_token = nn.Parameter(torch.randn(1, 1, hidden_size) * 0.02)

        self.x_embedder = nn.Linear(in_channels, hidden_size)
        self.stretched_phoneme_proj = nn.Linear(hidden_size, hidden_size) if stretched_phoneme_input else None
        self.transformer_blocks = nn.ModuleList(
            [
                InstructAudioJointTransformerBlock(
                    hidden_size,
                    num_attention_heads,
                    ff_inner_dim,
                    ff_kernel_size,
                    context_pre_only=index == num_joint_layers - 1,
                    qk_norm_eps=qk_norm_eps,
                    norm_eps=norm_eps,
                )
                for index in range(num_joint_layers)
            ]
        )
        self.single_transformer_blocks = nn.ModuleList(
            [
                InstructAudioSingleTransformerBlock(
                    hidden_size, num_attention_heads, ff_inner_dim, ff_kernel_size, qk_norm_eps, norm_eps
                )
                for _ in range(num_single_layers)
            ]
        )
        self.norm_out = AdaLayerNormContinuous(
            hidden_size, hidden_size, elementwise_affine=False, eps=norm_eps
        )
        self.proj_out = nn.Linear(hidden_size, in_channels)
        self.duration_predictor = InstructAudioDurationPredictor(hidden_size, duration_predictor_hidden_size)

        self._zero_init_modulations()
        self.gradient_checkpointing = False

    def _zero_init_modulations(self) -> None:
        # AdaLN-Zero (DiT): zero modulation makes every block the identity, and the zero output layer makes the
        # initial velocity exactly 0.
        for module in self.modules():
            if isinstance(module, (AdaLayerNormZero, AdaLayerNormContinuous)):
                nn.init.zeros_(module.linear.weight)
                nn.init.zeros_(module.linear.bias)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @property
    def head_dim(self) -> int:
        return self.config.hidden_size // self.config.num_attention_heads

    # The pipeline calls these two outside `forward`; `apply_forward_hook` runs an offload hook's pre-forward
    # first (as diffusers' VAEs do for encode/decode), so `enable_model_cpu_offload` moves the weights in time.
    @apply_forward_hook
    def encode_text_condition(
        self,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        phoneme_ids: torch.LongTensor | None = None,
        phoneme_attention_mask: torch.Tensor | None = None,
    ) -> InstructAudioTextCondition:
        r"""
        Build the timestep-independent text stream; compute it once per generation and pass it to `forward` as
        `text_condition`.

        Args:
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, instruction_len, instruction_dim)`):
                Hidden states of the instruction encoder.
            encoder_attention_mask (`torch.Tensor` of shape `(batch_size, instruction_len)`, *optional*):
                True (or 1) for valid instruction tokens; all valid when omitted. May be all False for a sample.
            phoneme_ids (`torch.LongTensor` of shape `(batch_size, phoneme_len)`, *optional*):
                Phoneme ids (0 is padding); no phonemes when omitted (e.g. instrumental music).
            phoneme_attention_mask (`torch.Tensor` of shape `(batch_size, phoneme_len)`, *optional*):
                True for valid phonemes; all valid when omitted. All False drops a sample's text (CFG).

        Returns:
            [`InstructAudioTextCondition`].
        """
        batch_size, instruction_len, _ = encoder_hidden_states.shape
        # The compute dtype: a plain parameter, which layerwise casting (fp8 storage) leaves alone.
        device, dtype = encoder_hidden_states.device, self.text_register_token.dtype
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(batch_size, instruction_len, dtype=torch.bool, device=device)
        instruction_mask = encoder_attention_mask.bool()
        if phoneme_ids is None:
            phoneme_ids = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        phoneme_mask = (
            torch.ones_like(phoneme_ids, dtype=torch.bool)
            if phoneme_attention_mask is None
            else phoneme_attention_mask.bool()
        )

        instruction_states = self.instruction_proj(self.instruction_norm(encoder_hidden_states.to(dtype)))
        phoneme_states = self.phoneme_encoder(phoneme_ids, phoneme_mask)

        num_instruction = instruction_mask.sum(dim=1, keepdim=True)
        num_phonemes = phoneme_mask.sum(dim=1, keepdim=True)
        instruction_positions = positions_from_mask(instruction_mask) - num_instruction
        phoneme_fractions = positions_from_mask(phoneme_mask) / num_phonemes.clamp(min=1)
        register_position = -num_instruction - 1

        def full(length: int, value: int) -> torch.LongTensor:
            return torch.full((batch_size, length), value, dtype=torch.long, device=device)

        hidden_states = torch.cat(
            [
                self.text_register_token.to(dtype).expand(batch_size, 1, -1),
                instruction_states,
                phoneme_states,
            ],
            dim=1,
        )
        attention_mask = torch.cat([full(1, 1).bool(), instruction_mask, phoneme_mask], dim=1)
        positions = torch.cat(
            [register_position.float(), instruction_positions.float(), phoneme_fractions.float()], dim=1
        )
        token_types = torch.cat(
            [
                full(1, TEXT_TOKEN_REGISTER),
                full(instruction_len, TEXT_TOKEN_INSTRUCTION),
                full(phoneme_ids.shape[1], TEXT_TOKEN_PHONEME),
            ],
            dim=1,
        )

        attention_mask, (hidden_states, positions, token_types) = _pack_valid_first(
            attention_mask, hidden_states, positions, token_types
        )
        return InstructAudioTextCondition(
            hidden_states=hidden_states * attention_mask[..., None],
            attention_mask=attention_mask,
            positions=positions,
            token_types=token_types,
        )

    @apply_forward_hook
    def predict_duration(
        self,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        phoneme_ids: torch.LongTensor | None = None,
        phoneme_attention_mask: torch.Tensor | None = None,
        text_condition: InstructAudioTextCondition | None = None,
    ) -> torch.Tensor:
        r"""
        Predict the log number of latent frames of each sample from its instruction and phonemes.

        Args:
            encoder_hidden_states, encoder_attention_mask, phoneme_ids, phoneme_attention_mask:
                As in [`~InstructAudioTransformerModel.encode_text_condition`]; ignored when `text_condition`
                is given.
            text_condition ([`InstructAudioTextCondition`], *optional*): A precomputed text stream.

        Returns:
            `torch.Tensor` of shape `(batch_size,)`, float32: predicted `log(latent_frames)`; round
            `exp(...)` for a frame count.
        """
        if text_condition is None:
            if encoder_hidden_states is None:
                raise ValueError(
                    "Pass `encoder_hidden_states` (and phonemes) or a precomputed `text_condition`."
                )
            text_condition = self.encode_text_condition(
                encoder_hidden_states, encoder_attention_mask, phoneme_ids, phoneme_attention_mask
            )
        return self.duration_predictor(text_condition)

    @staticmethod
    def duration_loss(
        predicted_log_frames: torch.Tensor,
        target_frames: torch.Tensor,
        sample_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        L1 loss in log space, `|predicted_log_frames - log(target_frames)|`: the error is a ratio, so a 10 %
        miss costs the same for a 2 s and a 20 s clip, and L1 keeps outliers (long pauses) from dominating.

        Args:
            predicted_log_frames (`torch.Tensor` of shape `(batch_size,)`): from `predict_duration`.
            target_frames (`torch.Tensor` of shape `(batch_size,)`): true numbers of latent frames (>= 1).
            sample_mask (`torch.Tensor` of shape `(batch_size,)`, *optional*): which samples count, e.g. excluding
                samples whose text was dropped; all when omitted.

        Returns:
            Scalar `torch.Tensor` (float32).
        """
        target = torch.log(target_frames.float().clamp(min=1))
        error = (predicted_log_frames.float() - target).abs()
        if sample_mask is None:
            return error.mean()
        weights = sample_mask.float()
        return (error * weights).sum() / weights.sum().clamp(min=1)

    @staticmethod
    def rope_positions(
        text_condition: InstructAudioTextCondition, audio_attention_mask: torch.BoolTensor
    ) -> torch.Tensor:
        r"""
        RoPE positions of the joint sequence `[text ; audio]`: audio frames 0..T_i-1, phoneme k of sample i at
        `k * T_i / L2_i` (aligned RoPE, with T_i and L2_i counted from that sample's masks), register and
        instruction tokens at their precomputed negative positions.

        Args:
            text_condition ([`InstructAudioTextCondition`]): the text stream.
            audio_attention_mask (`torch.BoolTensor` of shape `(batch_size, latent_frames)`): valid frames.

        Returns:
            `torch.Tensor` of shape `(batch_size, text_len + latent_frames)`, float32.
        """
        audio_attention_mask = audio_attention_mask.bool()
        num_frames = audio_attention_mask.sum(dim=1, keepdim=True)
        is_phoneme = text_condition.token_types == TEXT_TOKEN_PHONEME
        text_positions = torch.where(
            is_phoneme, text_condition.positions * num_frames, text_condition.positions
        )
        return torch.cat([text_positions, positions_from_mask(audio_attention_mask).float()], dim=1)

    @staticmethod
    def stretch_phonemes(
        text_condition: InstructAudioTextCondition,
        text_attention_mask: torch.BoolTensor,
        audio_attention_mask: torch.BoolTensor,
    ) -> torch.Tensor:
        r"""
        The phoneme encodings stretched uniformly over each sample's valid audio frames: frame `j` of `T` gets
        phoneme `k` of `L2` when `k / L2 <= (j + 0.5) / T < (k + 1) / L2`; zero for padded frames and for samples
        without (valid) phonemes.

        Args:
            text_condition ([`InstructAudioTextCondition`]): the text stream.
            text_attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len)`): the valid text tokens (the
                condition's mask with dropped phonemes removed).
            audio_attention_mask (`torch.BoolTensor` of shape `(batch_size, latent_frames)`): valid frames.

        Returns:
            `torch.Tensor` of shape `(batch_size, latent_frames, hidden_size)`.
        """
        is_phoneme = text_condition.attention_mask & (text_condition.token_types == TEXT_TOKEN_PHONEME)
        num_phonemes = is_phoneme.sum(dim=1, keepdim=True)
        # `positions` holds k / L2 for phoneme k; recover k exactly and compare it with each frame's phoneme index.
        phoneme_index = torch.round(text_condition.positions * num_phonemes).long()
        num_frames = audio_attention_mask.sum(dim=1, keepdim=True).clamp(min=1)
        frame_center = positions_from_mask(audio_attention_mask).float() + 0.5
        frame_phoneme = torch.floor(frame_center * num_phonemes / num_frames).long()
        assignment = (
            (frame_phoneme[:, :, None] == phoneme_index[:, None, :])
            & (is_phoneme & text_attention_mask)[:, None, :]
            & audio_attention_mask[:, :, None]
        )
        hidden_states = text_condition.hidden_states
        return torch.bmm(assignment.to(hidden_states.dtype), hidden_states)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        phoneme_ids: torch.LongTensor | None = None,
        phoneme_attention_mask: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        text_condition: InstructAudioTextCondition | None = None,
        drop_text: torch.BoolTensor | None = None,
        return_log_duration: bool = False,
        return_dict: bool = True,
    ) -> InstructAudioTransformerOutput | tuple[torch.Tensor, ...]:
        r"""
        Predict the velocity `noise - x0` of noisy latents.

        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, in_channels, latent_frames)`): noisy latents.
            timestep (`torch.Tensor` of shape `(batch_size,)` or a scalar): `sigma * 1000` (diffusers FlowMatch
                convention, sigma = 1 is pure noise).
            encoder_hidden_states, encoder_attention_mask, phoneme_ids, phoneme_attention_mask:
                The instruction and phonemes, as in [`~InstructAudioTransformerModel.encode_text_condition`];
                ignored when `text_condition` is given.
            audio_attention_mask (`torch.Tensor` of shape `(batch_size, latent_frames)`, *optional*): True for valid
                frames, padding at the end; all valid when omitted.
            text_condition ([`InstructAudioTextCondition`], *optional*): The precomputed text stream, to avoid
                re-encoding at every denoising step.
            drop_text (`torch.BoolTensor` of shape `(batch_size,)`, *optional*): Drop the phonemes of these samples,
                the same as an all-False `phoneme_attention_mask` (classifier-free guidance training). The duration
                prediction is not affected.
            return_log_duration (`bool`, defaults to `False`): Also return the duration predictor's output, so a
                distributed training step runs every parameter in one forward.
            return_dict (`bool`, defaults to `True`): Return an [`InstructAudioTransformerOutput`] instead of a tuple.

        Returns:
            [`InstructAudioTransformerOutput`], or the tuple `(sample,)` / `(sample, predicted_log_frames)`.
        """
        batch_size, _, latent_frames = hidden_states.shape
        if latent_frames > self.config.max_audio_frames:
            raise ValueError(
                f"{latent_frames} latent frames exceed `max_audio_frames` ({self.config.max_audio_frames})."
            )
        if text_condition is None:
            if encoder_hidden_states is None:
                raise ValueError(
                    "Pass `encoder_hidden_states` (and phonemes) or a precomputed `text_condition`."
                )
            text_condition = self.encode_text_condition(
                encoder_hidden_states, encoder_attention_mask, phoneme_ids, phoneme_attention_mask
            )
        if text_condition.hidden_states.shape[0] != batch_size:
            raise ValueError(
                f"The text condition has batch size {text_condition.hidden_states.shape[0]}, the latents {batch_size}."
            )
        device, dtype = hidden_states.device, hidden_states.dtype

        audio_mask = (
            torch.ones(batch_size, latent_frames, dtype=torch.bool, device=device)
            if audio_attention_mask is None
            else audio_attention_mask.bool()
        )
        text_mask = text_condition.attention_mask
        if drop_text is not None:
            is_phoneme = text_condition.token_types == TEXT_TOKEN_PHONEME
            text_mask = text_mask & ~(drop_text.bool()[:, None] & is_phoneme)

        rotary_emb = rotary_embedding(
            self.rope_positions(text_condition, audio_mask), self.head_dim, self.config.rope_theta
        )
        text_len = text_mask.shape[1]
        audio_rotary_emb = rotary_emb[:, text_len:]
        attention_mask = torch.cat([text_mask, audio_mask], dim=1)

        timestep = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch_size)
        temb = self.time_embedder(self.time_proj(timestep).to(dtype))

        encoder_states = text_condition.hidden_states.to(dtype)
        audio_states = self.x_embedder(hidden_states.transpose(1, 2))
        if self.stretched_phoneme_proj is not None:
            stretched = self.stretch_phonemes(text_condition, text_mask, audio_mask)
            audio_states = audio_states + self.stretched_phoneme_proj(stretched.to(dtype))

        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                encoder_states, audio_states = self._gradient_checkpointing_func(
                    block, audio_states, encoder_states, temb, attention_mask, rotary_emb
                )
            else:
                encoder_states, audio_states = block(
                    audio_states, encoder_states, temb, attention_mask, rotary_emb
                )

        for block in self.single_transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                audio_states = self._gradient_checkpointing_func(
                    block, audio_states, temb, audio_mask, audio_rotary_emb
                )
            else:
                audio_states = block(audio_states, temb, audio_mask, audio_rotary_emb)

        audio_states = self.norm_out(audio_states, temb)
        sample = (self.proj_out(audio_states) * audio_mask[..., None]).transpose(1, 2)

        predicted_log_frames = self.duration_predictor(text_condition) if return_log_duration else None
        if not return_dict:
            return (sample,) if predicted_log_frames is None else (sample, predicted_log_frames)
        return InstructAudioTransformerOutput(sample=sample, predicted_log_frames=predicted_log_frames)
