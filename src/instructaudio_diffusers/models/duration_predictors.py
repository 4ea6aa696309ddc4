"""Duration predictors of the InstructAudio transformer: the clip's total length, or each phoneme's length."""

import torch
import torch.nn as nn

from .text_condition import TEXT_TOKEN_INSTRUCTION, TEXT_TOKEN_PHONEME, InstructAudioTextCondition


def _masked_mean(hidden_states: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean over the tokens where `weights` `(B, L)` is True, in float32; returns `(mean (B, D), count (B, 1))`."""
    weights = weights[..., None].float()
    count = weights.sum(dim=1)
    return (hidden_states.float() * weights).sum(dim=1) / count.clamp(min=1), count


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
            mean, num_phonemes = _masked_mean(
                hidden_states, valid & (text_condition.token_types == token_type)
            )
            pooled.append(mean)
        features = torch.cat(pooled, dim=-1).to(hidden_states.dtype)
        features = torch.cat([self.norm(features), torch.log1p(num_phonemes).to(hidden_states.dtype)], dim=-1)
        return self.mlp(features).squeeze(-1).float() + torch.log(num_phonemes.squeeze(-1).clamp(min=1))


class InstructAudioTokenDurationPredictor(nn.Module):
    r"""
    Predicts `log(1 + latent frames)` of every phoneme token (FastSpeech 2 / Matcha-TTS style: a few convolutions
    over the phoneme encodings), conditioned on the instruction so that "speaks slowly", "excitedly" or "an
    elderly man" change the durations: the mean of the instruction tokens, projected, is added to every phoneme
    before the convolutions.

    It reads the packed text stream: phonemes are contiguous there and every other token is zeroed before each
    convolution, so a phoneme's prediction does not depend on the instruction's length or on batch padding. The
    input is detached, as for the total-duration head.

    Parameters:
        dim (`int`): Width of the text stream.
        hidden_size (`int`): Channels of the convolutions.
        kernel_size (`int`, defaults to `3`): Temporal kernel of the convolutions.
        num_layers (`int`, defaults to `2`): Convolutions.
        dropout (`float`, defaults to `0.1`): Dropout after each convolution (training only).
    """

    def __init__(
        self, dim: int, hidden_size: int, kernel_size: int = 3, num_layers: int = 2, dropout: float = 0.1
    ):
        super().__init__()
        self.instruction_proj = nn.Linear(dim, dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(dim if i == 0 else hidden_size, hidden_size, kernel_size, padding=kernel_size // 2)
            for i in range(num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, 1)

    def forward(self, text_condition: InstructAudioTextCondition) -> torch.Tensor:
        r"""Returns `log(1 + latent frames)` per token of the stream, `(batch_size, text_len)`, float32; only the
        valid phoneme tokens are meaningful (see [`~InstructAudioTextCondition.stream_to_phonemes`])."""
        hidden_states = text_condition.hidden_states.detach()
        is_phoneme = text_condition.is_phoneme[..., None].to(hidden_states.dtype)
        is_instruction = text_condition.attention_mask & (
            text_condition.token_types == TEXT_TOKEN_INSTRUCTION
        )
        instruction, _ = _masked_mean(hidden_states, is_instruction)
        states = (
            hidden_states + self.instruction_proj(instruction.to(hidden_states.dtype))[:, None]
        ) * is_phoneme
        for conv, norm in zip(self.convs, self.norms):
            states = conv(states.transpose(1, 2)).transpose(1, 2)
            states = self.dropout(norm(torch.relu(states))) * is_phoneme
        return self.proj(states).squeeze(-1).float()
