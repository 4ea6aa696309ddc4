"""InstructAudio's MM-DiT: a flow-matching velocity model over Mel-VAE latents, conditioned on an instruction and
phonemes through joint attention (Qiang et al., arXiv 2511.18487)."""

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.embeddings import PixArtAlphaTextProjection, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from diffusers.utils import BaseOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from .attention import InstructAudioJointTransformerBlock, InstructAudioSingleTransformerBlock
from .duration_predictors import InstructAudioDurationPredictor, InstructAudioTokenDurationPredictor
from .embeddings import InstructAudioPhonemeEncoder, positions_from_mask, rotary_embedding
from .text_condition import (
    TEXT_TOKEN_INSTRUCTION,
    TEXT_TOKEN_PHONEME,
    TEXT_TOKEN_REGISTER,
    InstructAudioJointCondition,
    InstructAudioTextCondition,
    pack_valid_first,
)

PHONEME_ALIGNMENTS = ("none", "uniform", "durations")


@dataclass
class InstructAudioTransformerOutput(BaseOutput):
    r"""
    Output of [`InstructAudioTransformerModel`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, in_channels, latent_frames)`):
            The predicted velocity `noise - x0`; exactly zero at padded audio frames.
        predicted_log_frames (`torch.Tensor` of shape `(batch_size,)`, *optional*):
            The duration predictor's log number of latent frames, when asked for with `return_log_duration=True`
            (models that predict a total length).
        predicted_log_durations (`torch.Tensor` of shape `(batch_size, phoneme_len)`, *optional*):
            The per-token predictor's `log(1 + latent frames)` of each phoneme, in the order of `phoneme_ids`, when
            asked for with `return_log_duration=True` (models with `phoneme_alignment="durations"`).
    """

    sample: torch.Tensor
    predicted_log_frames: torch.Tensor | None = None
    predicted_log_durations: torch.Tensor | None = None


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
        - Duration predictor: the total length ([`InstructAudioDurationPredictor`]), or with
          `phoneme_alignment="durations"` each phoneme's length ([`InstructAudioTokenDurationPredictor`]); both
          read a detached text stream.
        - Phoneme alignment (`phoneme_alignment`), an aid for small training budgets; joint attention over
          `[C_text ; audio]` stays in every mode. `"none"` (the paper): phonemes reach the audio only through
          attention. `"uniform"`: each audio frame also receives (through a linear layer) the encoded phoneme that
          a uniform speaking rate would put there, phoneme `k` of `L2` covering frames `[k T / L2, (k + 1) T / L2)`.
          `"durations"`: each frame receives the phoneme that per-token durations (from an aligner in training,
          from the per-token predictor in generation) put there, and a phoneme's aligned-RoPE position is the
          centre of its span. Samples whose phonemes are dropped (classifier-free guidance) receive nothing.
        - Pooled instruction (`pooled_instruction_conditioning=True`): the mean of the normalised instruction
          hidden states, projected as SD3's `pooled_projections`, is added to the timestep embedding, giving global
          attributes (tempo, mode, speaker) a direct path to every AdaLN. A dropped instruction pools to zero.
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
        stretched_phoneme_input (`bool`, defaults to `False`): The earlier spelling of
            `phoneme_alignment="uniform"`, kept so that saved configurations load unchanged.
        phoneme_alignment (`str`, defaults to `"none"`): How phonemes reach the audio frames besides attention:
            `"none"`, `"uniform"` or `"durations"` (see above).
        pooled_instruction_conditioning (`bool`, defaults to `False`): Add the pooled instruction embedding to the
            timestep embedding (see above).
        token_duration_predictor_layers (`int`, defaults to `2`): Convolutions of the per-token duration predictor
            (`phoneme_alignment="durations"`).
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
        phoneme_alignment: str = "none",
        pooled_instruction_conditioning: bool = False,
        token_duration_predictor_layers: int = 2,
    ):
        super().__init__()
        if num_joint_layers < 1:
            raise ValueError(
                "`num_joint_layers` must be at least 1: the text reaches the audio only through them."
            )
        if phoneme_alignment not in PHONEME_ALIGNMENTS:
            raise ValueError(
                f"`phoneme_alignment` must be one of {PHONEME_ALIGNMENTS}, got {phoneme_alignment!r}."
            )
        if stretched_phoneme_input and phoneme_alignment not in ("none", "uniform"):
            raise ValueError(
                f"`stretched_phoneme_input=True` means `phoneme_alignment='uniform'`; it contradicts "
                f"{phoneme_alignment!r}. Set only `phoneme_alignment`."
            )
        if stretched_phoneme_input:
            phoneme_alignment = "uniform"
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
        # The phoneme encodings placed on the frames (uniformly or by durations); the name predates "durations".
        self.stretched_phoneme_proj = (
            nn.Linear(hidden_size, hidden_size) if phoneme_alignment != "none" else None
        )
        self.pooled_instruction_embedder = (
            PixArtAlphaTextProjection(instruction_dim, hidden_size, act_fn="silu")
            if pooled_instruction_conditioning
            else None
        )
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
        if phoneme_alignment == "durations":
            self.duration_predictor = None
            self.token_duration_predictor = InstructAudioTokenDurationPredictor(
                hidden_size, duration_predictor_hidden_size, num_layers=token_duration_predictor_layers
            )
        else:
            self.duration_predictor = InstructAudioDurationPredictor(
                hidden_size, duration_predictor_hidden_size
            )
            self.token_duration_predictor = None

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

    @property
    def phoneme_alignment(self) -> str:
        r"""`"none"`, `"uniform"` or `"durations"`, with the older `stretched_phoneme_input` spelling resolved."""
        return "uniform" if self.config.stretched_phoneme_input else self.config.phoneme_alignment

    # The pipeline calls these two outside `forward`; `apply_forward_hook` runs an offload hook's pre-forward
    # first (as diffusers' VAEs do for encode/decode), so `enable_model_cpu_offload` moves the weights in time.
    @apply_forward_hook
    def encode_text_condition(
        self,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        phoneme_ids: torch.LongTensor | None = None,
        phoneme_attention_mask: torch.Tensor | None = None,
        phoneme_durations: torch.Tensor | None = None,
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
            phoneme_durations (`torch.Tensor` of shape `(batch_size, phoneme_len)`, *optional*): Latent frames of
                each phoneme (`phoneme_alignment="durations"`), e.g. from an aligner in training; the same as
                calling `with_durations` on the result. Generation predicts them instead
                ([`~InstructAudioTransformerModel.predict_token_durations`]).

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

        normalized_instruction = self.instruction_norm(encoder_hidden_states.to(dtype))
        instruction_states = self.instruction_proj(normalized_instruction)
        phoneme_states = self.phoneme_encoder(phoneme_ids, phoneme_mask)
        pooled_instruction = None
        if self.pooled_instruction_embedder is not None:
            weights = instruction_mask[..., None].to(dtype)
            pooled = (normalized_instruction * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
            pooled_instruction = self.pooled_instruction_embedder(pooled)

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
        phoneme_index = torch.cat(
            [
                full(1 + instruction_len, -1),
                torch.arange(phoneme_ids.shape[1], device=device).expand(batch_size, -1),
            ],
            dim=1,
        )

        attention_mask, (hidden_states, positions, token_types, phoneme_index) = pack_valid_first(
            attention_mask, hidden_states, positions, token_types, phoneme_index
        )
        condition = InstructAudioTextCondition(
            hidden_states=hidden_states * attention_mask[..., None],
            attention_mask=attention_mask,
            positions=positions,
            token_types=token_types,
            phoneme_index=phoneme_index,
            pooled_instruction=pooled_instruction,
        )
        return condition if phoneme_durations is None else condition.with_durations(phoneme_durations)

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
            `exp(...)` for a frame count. Models with `phoneme_alignment="durations"` give the log of the sum of
            their rounded per-phoneme predictions (at least one frame).
        """
        if text_condition is None:
            if encoder_hidden_states is None:
                raise ValueError(
                    "Pass `encoder_hidden_states` (and phonemes) or a precomputed `text_condition`."
                )
            text_condition = self.encode_text_condition(
                encoder_hidden_states, encoder_attention_mask, phoneme_ids, phoneme_attention_mask
            )
        if self.token_duration_predictor is None:
            return self.duration_predictor(text_condition)
        frames = torch.expm1(self.token_duration_predictor(text_condition)).round().clamp(min=0)
        return torch.log((frames * text_condition.is_phoneme).sum(dim=1).clamp(min=1))

    @apply_forward_hook
    def predict_token_durations(
        self, text_condition: InstructAudioTextCondition, phoneme_len: int
    ) -> torch.Tensor:
        r"""
        Predict `log(1 + latent frames)` of each phoneme (models with `phoneme_alignment="durations"`).

        Args:
            text_condition ([`InstructAudioTextCondition`]): from `encode_text_condition`.
            phoneme_len (`int`): `phoneme_ids.shape[1]` of the call that built it.

        Returns:
            `torch.Tensor` of shape `(batch_size, phoneme_len)`, float32, in the order of `phoneme_ids`; zero at
            padding and for dropped text.
        """
        if self.token_duration_predictor is None:
            raise ValueError(
                f"This model predicts a total length (`phoneme_alignment={self.phoneme_alignment!r}`); "
                "use `predict_duration`."
            )
        return text_condition.stream_to_phonemes(self.token_duration_predictor(text_condition), phoneme_len)

    @apply_forward_hook
    def prepare_joint_condition(
        self, text_condition: InstructAudioTextCondition, audio_attention_mask: torch.Tensor
    ) -> InstructAudioJointCondition:
        r"""
        Build the masks, the rotary table and the placed phonemes of the joint sequence, which are the same at every
        denoising step; compute them once per generation and pass them to `forward` as `joint_condition`, with the
        same `text_condition`.

        Args:
            text_condition ([`InstructAudioTextCondition`]): from `encode_text_condition`; with durations
                (`with_durations`) for models with `phoneme_alignment="durations"`.
            audio_attention_mask (`torch.Tensor` of shape `(batch_size, latent_frames)`): True (or 1) for valid
                frames, padding at the end.

        Returns:
            [`InstructAudioJointCondition`].
        """
        if (
            self.phoneme_alignment == "durations"
            and text_condition.durations is None
            and bool(text_condition.is_phoneme.any())
        ):
            raise ValueError(
                "This model places phonemes by their durations (`phoneme_alignment='durations'`): pass "
                "`phoneme_durations`, or a `text_condition` built with them (`with_durations`)."
            )
        audio_mask = audio_attention_mask.bool()
        text_mask = text_condition.attention_mask
        placed = None
        if self.phoneme_alignment == "uniform":
            placed = text_condition.stretched_phoneme_states(text_mask, audio_mask)
        elif self.phoneme_alignment == "durations" and text_condition.durations is not None:
            placed = text_condition.phoneme_states_by_durations(text_mask, audio_mask)
        dtype = self.text_register_token.dtype
        return InstructAudioJointCondition(
            attention_mask=torch.cat([text_mask, audio_mask], dim=1),
            audio_attention_mask=audio_mask,
            rotary_emb=rotary_embedding(
                text_condition.rope_positions(audio_mask), self.head_dim, self.config.rope_theta
            ),
            frame_phoneme_states=None if placed is None else self.stretched_phoneme_proj(placed.to(dtype)),
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        phoneme_ids: torch.LongTensor | None = None,
        phoneme_attention_mask: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        phoneme_durations: torch.Tensor | None = None,
        text_condition: InstructAudioTextCondition | None = None,
        joint_condition: InstructAudioJointCondition | None = None,
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
            phoneme_durations (`torch.Tensor` of shape `(batch_size, phoneme_len)`, *optional*): Latent frames of
                each phoneme, required with `phoneme_alignment="durations"` unless `text_condition` has them.
            text_condition ([`InstructAudioTextCondition`], *optional*): The precomputed text stream, to avoid
                re-encoding at every denoising step.
            joint_condition ([`InstructAudioJointCondition`], *optional*): The masks, rotary table and placed
                phonemes from [`~InstructAudioTransformerModel.prepare_joint_condition`] for this `text_condition`,
                to avoid rebuilding them at every denoising step; it holds the audio mask and the durations, so
                `audio_attention_mask` and `phoneme_durations` are then not accepted.
            return_log_duration (`bool`, defaults to `False`): Also return the duration predictor's output (the
                total, or per phoneme for `phoneme_alignment="durations"`), so a distributed training step runs
                every parameter in one forward.
            return_dict (`bool`, defaults to `True`): Return an [`InstructAudioTransformerOutput`] instead of a tuple.

        Returns:
            [`InstructAudioTransformerOutput`], or the tuple `(sample,)` / `(sample, predicted_log_frames)` /
            `(sample, predicted_log_durations)`.
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
        text_len = text_condition.attention_mask.shape[1]
        if joint_condition is None:
            if phoneme_durations is not None:
                text_condition = text_condition.with_durations(phoneme_durations)
            if audio_attention_mask is None:
                audio_attention_mask = torch.ones(batch_size, latent_frames, dtype=torch.bool, device=device)
            joint_condition = self.prepare_joint_condition(text_condition, audio_attention_mask)
        elif audio_attention_mask is not None or phoneme_durations is not None:
            raise ValueError(
                "`joint_condition` already holds the audio mask and the durations: pass neither "
                "`audio_attention_mask` nor `phoneme_durations` with it."
            )
        elif joint_condition.attention_mask.shape != (batch_size, text_len + latent_frames):
            raise ValueError(
                f"`joint_condition` has the joint shape {tuple(joint_condition.attention_mask.shape)}, these inputs "
                f"{(batch_size, text_len + latent_frames)}: build it from this `text_condition` and audio mask."
            )
        audio_mask, attention_mask = joint_condition.audio_attention_mask, joint_condition.attention_mask
        rotary_emb, audio_rotary_emb = joint_condition.rotary_emb, joint_condition.rotary_emb[:, text_len:]

        timestep = torch.as_tensor(timestep, device=device).reshape(-1).expand(batch_size)
        temb = self.time_embedder(self.time_proj(timestep).to(dtype))
        if self.pooled_instruction_embedder is not None:
            temb = temb + text_condition.pooled_instruction.to(dtype)

        encoder_states = text_condition.hidden_states.to(dtype)
        audio_states = self.x_embedder(hidden_states.transpose(1, 2))
        if joint_condition.frame_phoneme_states is not None:
            audio_states = audio_states + joint_condition.frame_phoneme_states.to(dtype)

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

        predicted_log_frames = predicted_log_durations = None
        if return_log_duration and self.token_duration_predictor is not None:
            phoneme_len = (
                phoneme_ids.shape[1]
                if phoneme_ids is not None
                else int(text_condition.phoneme_index.max()) + 1
            )
            predicted_log_durations = self.predict_token_durations(text_condition, phoneme_len)
        elif return_log_duration:
            predicted_log_frames = self.duration_predictor(text_condition)
        if not return_dict:
            extra = predicted_log_frames if predicted_log_durations is None else predicted_log_durations
            return (sample,) if extra is None else (sample, extra)
        return InstructAudioTransformerOutput(
            sample=sample,
            predicted_log_frames=predicted_log_frames,
            predicted_log_durations=predicted_log_durations,
        )
