"""The text stream of the InstructAudio transformer: what one generation computes once and every denoising step
reads."""

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.utils import BaseOutput

from .embeddings import positions_from_mask

# Kinds of text-stream tokens, stored in `InstructAudioTextCondition.token_types`.
TEXT_TOKEN_REGISTER = 0
TEXT_TOKEN_INSTRUCTION = 1
TEXT_TOKEN_PHONEME = 2


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
            sample's number of audio frames inside `forward` (aligned RoPE), unless `durations` place them.
        token_types (`torch.LongTensor` of shape `(batch_size, text_len)`): `TEXT_TOKEN_REGISTER`,
            `TEXT_TOKEN_INSTRUCTION` or `TEXT_TOKEN_PHONEME`; meaningless at padding.
        phoneme_index (`torch.LongTensor` of shape `(batch_size, text_len)`, *optional*): for phoneme tokens, their
            index in the caller's `phoneme_ids`; -1 elsewhere. Maps per-phoneme values in and out of the stream.
        pooled_instruction (`torch.Tensor` of shape `(batch_size, hidden_size)`, *optional*): the pooled instruction
            embedding added to the timestep embedding (models with `pooled_instruction_conditioning`).
        durations (`torch.Tensor` of shape `(batch_size, text_len)`, *optional*): latent frames of each phoneme
            token (0 elsewhere), set by [`~InstructAudioTextCondition.with_durations`] for models with
            `phoneme_alignment="durations"`; the phonemes are then in order, back to back from frame 0.
    """

    hidden_states: torch.Tensor
    attention_mask: torch.BoolTensor
    positions: torch.Tensor
    token_types: torch.LongTensor
    phoneme_index: torch.LongTensor | None = None
    pooled_instruction: torch.Tensor | None = None
    durations: torch.Tensor | None = None

    @property
    def is_phoneme(self) -> torch.BoolTensor:
        r"""`(batch_size, text_len)`: True at valid phoneme tokens."""
        return self.attention_mask & (self.token_types == TEXT_TOKEN_PHONEME)

    @classmethod
    def cat(cls, conditions: list["InstructAudioTextCondition"]) -> "InstructAudioTextCondition":
        r"""Concatenate along the batch (e.g. conditional and unconditional for classifier-free guidance),
        right-padding the shorter ones; a field that only some conditions have is zero (index -1) in the others."""
        text_len = max(condition.hidden_states.shape[1] for condition in conditions)

        def pad(tensor: torch.Tensor, value: float = 0) -> torch.Tensor:
            padding = [0, 0] * (tensor.ndim - 2) + [0, text_len - tensor.shape[1]]
            return nn.functional.pad(tensor, padding, value=value)

        def optional(name: str, fill: float, per_token: bool = True) -> torch.Tensor | None:
            values = [getattr(c, name) for c in conditions]
            if all(value is None for value in values):
                return None
            reference = next(value for value in values if value is not None)
            filled = []
            for condition, value in zip(conditions, values):
                if value is None:
                    shape = (condition.hidden_states.shape[0], *reference.shape[1:])
                    value = torch.full(shape, fill, dtype=reference.dtype, device=reference.device)
                filled.append(pad(value, fill) if per_token else value)
            return torch.cat(filled)

        return cls(
            hidden_states=torch.cat([pad(c.hidden_states) for c in conditions]),
            attention_mask=torch.cat([pad(c.attention_mask) for c in conditions]),
            positions=torch.cat([pad(c.positions) for c in conditions]),
            token_types=torch.cat([pad(c.token_types) for c in conditions]),
            phoneme_index=optional("phoneme_index", -1),
            pooled_instruction=optional("pooled_instruction", 0, per_token=False),
            durations=optional("durations", 0),
        )

    def phonemes_to_stream(self, values: torch.Tensor) -> torch.Tensor:
        r"""Place per-phoneme values `(batch_size, phoneme_len)` (in the order of the caller's `phoneme_ids`) at
        their tokens in the stream: `(batch_size, text_len)`, zero at every other token."""
        if self.phoneme_index is None:
            raise ValueError(
                "This text condition has no `phoneme_index`; build it with `encode_text_condition`."
            )
        index = self.phoneme_index.clamp(min=0, max=max(values.shape[1] - 1, 0))
        if values.shape[1] == 0:
            return torch.zeros_like(self.phoneme_index, dtype=values.dtype)
        placed = torch.gather(values, 1, index)
        return torch.where(self.is_phoneme & (self.phoneme_index >= 0), placed, torch.zeros_like(placed))

    def stream_to_phonemes(self, values: torch.Tensor, phoneme_len: int) -> torch.Tensor:
        r"""The inverse of [`~InstructAudioTextCondition.phonemes_to_stream`]: stream values `(batch_size, text_len)`
        at the phoneme tokens, back in phoneme order, `(batch_size, phoneme_len)`, zero where no valid token."""
        if self.phoneme_index is None:
            raise ValueError(
                "This text condition has no `phoneme_index`; build it with `encode_text_condition`."
            )
        keep = self.is_phoneme & (self.phoneme_index >= 0) & (self.phoneme_index < phoneme_len)
        output = torch.zeros(values.shape[0], phoneme_len + 1, dtype=values.dtype, device=values.device)
        # Tokens that are not kept go to a spare last column, dropped below.
        index = torch.where(keep, self.phoneme_index, torch.full_like(self.phoneme_index, phoneme_len))
        output.scatter_(1, index, values)
        return output[:, :phoneme_len]

    def with_durations(self, durations: torch.Tensor) -> "InstructAudioTextCondition":
        r"""
        This condition with its phonemes placed in time.

        Args:
            durations (`torch.Tensor` of shape `(batch_size, phoneme_len)`): latent frames of each phoneme token, in
                the order of the caller's `phoneme_ids` (integers >= 0; zero at padding).
        """
        if durations.shape[0] != self.hidden_states.shape[0]:
            raise ValueError(
                f"`durations` has batch size {durations.shape[0]}, the text condition {self.hidden_states.shape[0]}."
            )
        if (durations < 0).any():
            raise ValueError("`durations` must be >= 0 latent frames.")
        stream_durations = self.phonemes_to_stream(durations.to(self.positions.device).float())
        return InstructAudioTextCondition(
            hidden_states=self.hidden_states,
            attention_mask=self.attention_mask,
            positions=self.positions,
            token_types=self.token_types,
            phoneme_index=self.phoneme_index,
            pooled_instruction=self.pooled_instruction,
            durations=stream_durations,
        )

    def phoneme_spans(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""`(start, end)` latent frames of every token, `(batch_size, text_len)` each, from `durations`: the
        phonemes back to back in order from frame 0 (other tokens get empty spans)."""
        if self.durations is None:
            raise ValueError("This text condition has no durations; call `with_durations` first.")
        end = torch.cumsum(self.durations * self.is_phoneme, dim=1)
        return end - self.durations * self.is_phoneme, end

    def rope_positions(self, audio_attention_mask: torch.BoolTensor) -> torch.Tensor:
        r"""
        RoPE positions of the joint sequence `[text ; audio]`: audio frames 0..T_i-1, phoneme k of sample i at
        `k * T_i / L2_i` (aligned RoPE, with T_i and L2_i counted from that sample's masks) or, when the condition
        has durations, at the centre of its span, register and instruction tokens at their precomputed negative
        positions.

        Args:
            audio_attention_mask (`torch.BoolTensor` of shape `(batch_size, latent_frames)`): valid frames.

        Returns:
            `torch.Tensor` of shape `(batch_size, text_len + latent_frames)`, float32.
        """
        audio_attention_mask = audio_attention_mask.bool()
        num_frames = audio_attention_mask.sum(dim=1, keepdim=True)
        is_phoneme = self.token_types == TEXT_TOKEN_PHONEME
        if self.durations is not None:
            start, end = self.phoneme_spans()
            phoneme_positions = (start + end) / 2
        else:
            phoneme_positions = self.positions * num_frames
        text_positions = torch.where(is_phoneme, phoneme_positions, self.positions)
        return torch.cat([text_positions, positions_from_mask(audio_attention_mask).float()], dim=1)

    def stretched_phoneme_states(
        self, text_attention_mask: torch.BoolTensor, audio_attention_mask: torch.BoolTensor
    ) -> torch.Tensor:
        r"""
        The phoneme encodings stretched uniformly over each sample's valid audio frames: frame `j` of `T` gets
        phoneme `k` of `L2` when `k / L2 <= (j + 0.5) / T < (k + 1) / L2`; zero for padded frames and for samples
        without (valid) phonemes.

        Args:
            text_attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len)`): the valid text tokens (the
                condition's mask with dropped phonemes removed).
            audio_attention_mask (`torch.BoolTensor` of shape `(batch_size, latent_frames)`): valid frames.

        Returns:
            `torch.Tensor` of shape `(batch_size, latent_frames, hidden_size)`.
        """
        num_phonemes = self.is_phoneme.sum(dim=1, keepdim=True)
        # `positions` holds k / L2 for phoneme k; recover k exactly and compare it with each frame's phoneme index.
        phoneme_index = torch.round(self.positions * num_phonemes).long()
        num_frames = audio_attention_mask.sum(dim=1, keepdim=True).clamp(min=1)
        frame_center = positions_from_mask(audio_attention_mask).float() + 0.5
        frame_phoneme = torch.floor(frame_center * num_phonemes / num_frames).long()
        assignment = (
            (frame_phoneme[:, :, None] == phoneme_index[:, None, :])
            & (self.is_phoneme & text_attention_mask)[:, None, :]
            & audio_attention_mask[:, :, None]
        )
        return torch.bmm(assignment.to(self.hidden_states.dtype), self.hidden_states)

    def phoneme_states_by_durations(
        self, text_attention_mask: torch.BoolTensor, audio_attention_mask: torch.BoolTensor
    ) -> torch.Tensor:
        r"""
        The phoneme encodings on the frames their durations cover: frame `j` gets the phoneme whose span
        `[start, end)` contains it; zero for padded frames, for frames past the last span and for samples without
        (valid) phonemes.

        Args:
            text_attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len)`): as above.
            audio_attention_mask (`torch.BoolTensor` of shape `(batch_size, latent_frames)`): valid frames.

        Returns:
            `torch.Tensor` of shape `(batch_size, latent_frames, hidden_size)`.
        """
        start, end = self.phoneme_spans()
        frame = torch.arange(audio_attention_mask.shape[1], device=start.device, dtype=start.dtype)[
            None, :, None
        ]
        assignment = (
            (frame >= start[:, None, :])
            & (frame < end[:, None, :])
            & (self.is_phoneme & text_attention_mask)[:, None, :]
            & audio_attention_mask[:, :, None]
        )
        return torch.bmm(assignment.to(self.hidden_states.dtype), self.hidden_states)


@dataclass
class InstructAudioJointCondition(BaseOutput):
    r"""
    What every denoising step of one generation reads besides the latents and the timestep: the padding mask and
    the rotary table of the joint sequence `[text ; audio]`, and the phoneme encodings placed on the audio frames.
    They follow from the text condition and the audio mask alone, so
    [`InstructAudioTransformerModel.prepare_joint_condition`] builds them once per generation instead of `forward`
    rebuilding them at every step.

    Args:
        attention_mask (`torch.BoolTensor` of shape `(batch_size, text_len + latent_frames)`): True for valid
            tokens of the joint sequence.
        audio_attention_mask (`torch.BoolTensor` of shape `(batch_size, latent_frames)`): True for valid frames.
        rotary_emb (`torch.Tensor` of shape `(batch_size, text_len + latent_frames, head_dim // 2)`, complex64):
            the rotary table of the joint sequence (aligned RoPE).
        frame_phoneme_states (`torch.Tensor` of shape `(batch_size, latent_frames, hidden_size)`, *optional*): the
            phoneme encodings placed on the frames (uniformly or by durations) and projected, added to the embedded
            latents; `None` for models that reach the frames through attention only.
    """

    attention_mask: torch.BoolTensor
    audio_attention_mask: torch.BoolTensor
    rotary_emb: torch.Tensor
    frame_phoneme_states: torch.Tensor | None = None


def pack_valid_first(
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
