"""A phoneme-to-frame aligner: soft attention between phoneme and mel encodings, trained with a forward-sum
(CTC) objective under a beta-binomial prior, and hard durations from monotonic alignment search."""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from ..audio.mel import MelSettings, MelSpectrogram
from .text_condition import pack_valid_first

# Log-probability of a padded phoneme.
_MASKED = -1e4


@dataclass
class PhonemeAlignerOutput(BaseOutput):
    r"""
    Output of [`PhonemeAlignerModel`].

    Args:
        log_attention (`torch.Tensor` of shape `(batch_size, mel_frames, aligned_len)`):
            Log-probability of each aligned token at each frame (prior included), the aligned tokens of a clip
            packed to the front in their order; -1e4 at padding, zero rows at padded frames.
        aligned_token_mask (`torch.BoolTensor` of shape `(batch_size, phoneme_len)`):
            Which input tokens take part in the alignment (valid and not silent); the others get zero frames.
    """

    log_attention: torch.Tensor
    aligned_token_mask: torch.BoolTensor


def beta_binomial_log_prior(
    phoneme_counts: torch.Tensor,
    frame_counts: torch.Tensor,
    phoneme_len: int,
    frame_len: int,
    scaling: float = 1.0,
) -> torch.Tensor:
    r"""
    The beta-binomial alignment prior of RAD-TTS (Shih et al., 2021): frame `j` (1-based) of `T` puts
    `BetaBinomial(n=L, a=scaling * j, b=scaling * (T + 1 - j))` mass on phoneme `k` in `0..L-1`, a soft diagonal
    that keeps the attention near a constant speaking rate until it learns better.

    Written out with `lgamma` (a few lines) so that a whole padded batch is one tensor expression.

    Args:
        phoneme_counts, frame_counts (`torch.Tensor` of shape `(batch_size,)`): valid lengths `L` and `T`.
        phoneme_len, frame_len (`int`): padded sizes.
        scaling (`float`): sharpness; larger is closer to the diagonal.

    Returns:
        `torch.Tensor` of shape `(batch_size, frame_len, phoneme_len)`, float32: the log-prior; 0 at padding.
    """
    device = phoneme_counts.device
    n = phoneme_counts.float()[:, None, None]
    t = frame_counts.float()[:, None, None]
    k = torch.arange(phoneme_len, device=device, dtype=torch.float32)[None, None, :]
    j = torch.arange(1, frame_len + 1, device=device, dtype=torch.float32)[None, :, None]
    a, b = scaling * j, (scaling * (t + 1 - j)).clamp(min=1e-3)

    def log_beta(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    k_valid = torch.minimum(k, n)
    log_choose = torch.lgamma(n + 1) - torch.lgamma(k_valid + 1) - torch.lgamma(n - k_valid + 1)
    log_prior = log_choose + log_beta(k_valid + a, n - k_valid + b) - log_beta(a, b)
    valid = (k < n) & (j <= t)
    return torch.where(valid, log_prior, torch.zeros_like(log_prior))


class PhonemeAlignerModel(ModelMixin, ConfigMixin):
    r"""
    Finds where each phoneme token of a clip is spoken: a RAD-TTS-style alignment encoder (Shih et al., "RAD-TTS:
    Parallel flow-based TTS with robust alignment learning and diverse synthesis", 2021; the aligner of NeMo's
    FastPitch). Phoneme ids and log-mel frames are each encoded by a few convolutions; the attention of frame `j`
    on phoneme `k` is a softmax over `-temperature * |query_j - key_k|^2`, combined with a beta-binomial prior.
    Training maximises the probability of all monotonic paths through the phonemes (the forward-sum objective,
    computed as a CTC loss); inference takes the single best path (monotonic alignment search), which gives every
    token at least one mel frame.

    Why this aligner: it needs nothing but the training data (no external tool, no download), trains in minutes
    on a CPU, and the prior keeps early training from collapsing, the failure mode of MAS over Gaussian means.

    Mel frames are normalised per clip and channel (mean and variance over the valid frames), so loudness and
    recording gain do not move the alignment.

    Tokens that are never heard (`silent_token_ids`: word boundaries, language and speaker tags) still shape the
    keys of their neighbours, but only the other tokens are aligned: MAS gives every aligned token at least one
    mel frame, which a word boundary would otherwise take from the phones around it. Silent tokens get zero
    frames. A clip made only of silent tokens aligns all of them.

    Parameters:
        vocab_size (`int`, defaults to `512`): Phoneme vocabulary size; id 0 is padding.
        num_mel_bins (`int`, defaults to `80`): Mel channels of the input frames.
        hidden_size (`int`, defaults to `256`): Width of the phoneme embedding and of the encoders' hidden layer.
        attention_dim (`int`, defaults to `80`): Width of the keys and queries compared by distance.
        temperature (`float`, defaults to `0.0005`): Scale of the squared distances in the attention logits.
        prior_scaling (`float`, defaults to `1.0`): Sharpness of the beta-binomial prior.
        sampling_rate, n_fft, hop_length, win_length, mel_fmin, mel_fmax: The log-mel front end of the input
            frames (copied from the Mel-VAE it serves, so features and latents never disagree).
        time_downsample_factor (`int`, defaults to `2`): Mel frames per latent frame of that VAE.
        silent_token_ids (`list[int]`, *optional*): Token ids that get no frames (see above); `None` aligns every
            token (the first aligners were trained so).
    """

    @register_to_config
    def __init__(
        self,
        vocab_size: int = 512,
        num_mel_bins: int = MelSettings.n_mels,
        hidden_size: int = 256,
        attention_dim: int = 80,
        temperature: float = 0.0005,
        prior_scaling: float = 1.0,
        sampling_rate: int = MelSettings.sampling_rate,
        n_fft: int = MelSettings.n_fft,
        hop_length: int = MelSettings.hop_length,
        win_length: int | None = MelSettings.win_length,
        mel_fmin: float = MelSettings.mel_fmin,
        mel_fmax: float | None = MelSettings.mel_fmax,
        time_downsample_factor: int = 2,
        silent_token_ids: list[int] | None = None,
    ):
        super().__init__()
        self.register_buffer(
            "_silent_ids", torch.tensor(sorted(silent_token_ids or []), dtype=torch.long), persistent=False
        )
        self.phoneme_embedding = nn.Embedding(vocab_size, hidden_size, padding_idx=0)
        self.key_encoder = nn.Sequential(
            nn.Conv1d(hidden_size, 2 * hidden_size, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * hidden_size, attention_dim, kernel_size=1),
        )
        self.query_encoder = nn.Sequential(
            nn.Conv1d(num_mel_bins, 2 * num_mel_bins, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(2 * num_mel_bins, attention_dim, kernel_size=1),
            nn.ReLU(),
            nn.Conv1d(attention_dim, attention_dim, kernel_size=1),
        )

    def mel_spectrogram(self) -> MelSpectrogram:
        r"""The log-mel front end of the aligner's input frames."""
        return MelSettings.from_config(self.config, n_mels=self.config.num_mel_bins).spectrogram()

    @staticmethod
    def normalize_mel(mel: torch.Tensor, mel_mask: torch.BoolTensor) -> torch.Tensor:
        r"""Per clip and channel mean/variance normalisation over valid frames; `(B, n_mels, T)`, zero at padding."""
        weights = mel_mask[:, None, :].to(mel.dtype)
        count = weights.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = (mel * weights).sum(dim=-1, keepdim=True) / count
        variance = (((mel - mean) * weights) ** 2).sum(dim=-1, keepdim=True) / count
        return (mel - mean) / torch.sqrt(variance + 1e-5) * weights

    def aligned_token_mask(
        self, phoneme_ids: torch.LongTensor, phoneme_mask: torch.BoolTensor
    ) -> torch.BoolTensor:
        r"""Valid tokens that are not silent; a clip with no such token aligns all its valid tokens."""
        phoneme_mask = phoneme_mask.bool()
        aligned = phoneme_mask & ~torch.isin(phoneme_ids, self._silent_ids)
        return torch.where(aligned.any(dim=1, keepdim=True), aligned, phoneme_mask)

    def forward(
        self,
        mel: torch.Tensor,
        mel_mask: torch.BoolTensor,
        phoneme_ids: torch.LongTensor,
        phoneme_mask: torch.BoolTensor,
        return_dict: bool = True,
    ) -> PhonemeAlignerOutput | tuple[torch.Tensor]:
        r"""
        Soft alignment of each clip.

        Args:
            mel (`torch.Tensor` of shape `(batch_size, num_mel_bins, mel_frames)`): log-mel frames.
            mel_mask (`torch.BoolTensor` of shape `(batch_size, mel_frames)`): valid frames, padding at the end.
            phoneme_ids (`torch.LongTensor` of shape `(batch_size, phoneme_len)`): the processor's token ids.
            phoneme_mask (`torch.BoolTensor` of shape `(batch_size, phoneme_len)`): valid tokens, padding at the end.
            return_dict (`bool`, defaults to `True`): Return a [`PhonemeAlignerOutput`] instead of a tuple.
        """
        mel_mask, phoneme_mask = mel_mask.bool(), phoneme_mask.bool()
        aligned_token_mask = self.aligned_token_mask(phoneme_ids, phoneme_mask)
        keys = self.key_encoder(self.phoneme_embedding(phoneme_ids).transpose(1, 2))  # (B, A, L)
        # Keys see the whole sequence; only the aligned tokens' keys, packed to the front, meet the frames.
        phoneme_mask, (keys,) = pack_valid_first(aligned_token_mask, keys.transpose(1, 2))
        keys = keys.transpose(1, 2)  # (B, A, L')
        queries = self.query_encoder(self.normalize_mel(mel, mel_mask))  # (B, A, T)
        # |q - k|^2 = |q|^2 + |k|^2 - 2 q.k: a (B, T, L) matmul instead of a (B, T, L, A) difference tensor.
        distance = (
            queries.pow(2).sum(1)[:, :, None]
            + keys.pow(2).sum(1)[:, None, :]
            - 2.0 * torch.bmm(queries.transpose(1, 2), keys)
        ).clamp(min=0)
        logits = -self.config.temperature * distance  # (B, T, L)
        # A large finite value rather than -inf: CTC's backward turns -inf inputs into NaN gradients.
        logits = logits.masked_fill(~phoneme_mask[:, None, :], _MASKED)
        log_prior = beta_binomial_log_prior(
            phoneme_mask.sum(1),
            mel_mask.sum(1),
            phoneme_mask.shape[1],
            mel.shape[-1],
            self.config.prior_scaling,
        )
        log_attention = torch.log_softmax(logits, dim=-1) + log_prior
        log_attention = log_attention.masked_fill(~mel_mask[:, :, None], 0.0)
        if not return_dict:
            return (log_attention, aligned_token_mask)
        return PhonemeAlignerOutput(log_attention=log_attention, aligned_token_mask=aligned_token_mask)

    @staticmethod
    def forward_sum_loss(
        log_attention: torch.Tensor,
        mel_mask: torch.BoolTensor,
        aligned_token_mask: torch.BoolTensor,
        blank_logprob: float = -1.0,
    ) -> torch.Tensor:
        r"""
        The forward-sum objective: minus the log-probability of all monotonic paths that visit every aligned token
        in order, per frame, as a CTC loss whose targets are the token positions `1..L` and whose blank (class 0)
        has a fixed log-probability. Returns the mean over clips of the per-frame loss (scalar).

        `aligned_token_mask` is the output's `(batch_size, phoneme_len)` mask (only its counts matter here).
        """
        batch_size, frames, phoneme_len = log_attention.shape
        phoneme_mask = _packed_mask(aligned_token_mask, phoneme_len)
        logits = log_attention.masked_fill(~phoneme_mask[:, None, :], _MASKED)
        blank = torch.full((batch_size, frames, 1), blank_logprob, dtype=logits.dtype, device=logits.device)
        log_probs = torch.log_softmax(torch.cat([blank, logits], dim=-1), dim=-1)
        targets = torch.arange(1, phoneme_len + 1, device=logits.device).expand(batch_size, -1)
        frame_counts, phoneme_counts = mel_mask.sum(1), phoneme_mask.sum(1)
        loss = nn.functional.ctc_loss(
            log_probs.transpose(0, 1),
            targets,
            input_lengths=frame_counts,
            target_lengths=phoneme_counts,
            blank=0,
            reduction="none",
            zero_infinity=True,
        )
        return (loss / frame_counts.clamp(min=1)).mean()

    @staticmethod
    def hard_durations(
        log_attention: torch.Tensor, mel_mask: torch.BoolTensor, aligned_token_mask: torch.BoolTensor
    ) -> torch.LongTensor:
        r"""
        Mel frames per input token on the most likely monotonic path (monotonic alignment search through the
        maintained `monotonic-alignment-search` package): every aligned token at least one frame, silent tokens
        none.

        Returns:
            `torch.LongTensor` of shape `(batch_size, phoneme_len)` (the input tokens, as `aligned_token_mask`):
            zero at padding and at silent tokens; each row sums to the clip's valid frames.
        """
        try:
            from monotonic_alignment_search import maximum_path
        except ImportError as error:  # pragma: no cover - the training extra installs it
            raise ImportError(
                "Hard alignment needs the `monotonic-alignment-search` package: pip install -e '.[training]'."
            ) from error
        aligned_token_mask = aligned_token_mask.bool()
        phoneme_mask = _packed_mask(aligned_token_mask, log_attention.shape[-1])
        mask = (phoneme_mask[:, :, None] & mel_mask.bool()[:, None, :]).float()
        # The search maximises the summed log-probability along the path; it never leaves the valid block.
        value = log_attention.transpose(1, 2).detach().float().cpu().masked_fill(mask.cpu() == 0, 0.0)
        path = maximum_path(value.contiguous(), mask.cpu().contiguous(), implementation="cython")
        packed = path.sum(dim=-1).round().long().to(log_attention.device)  # (B, L')
        durations = torch.zeros(aligned_token_mask.shape, dtype=torch.long, device=log_attention.device)
        durations[aligned_token_mask] = packed[phoneme_mask]
        return durations


def _packed_mask(aligned_token_mask: torch.BoolTensor, packed_len: int) -> torch.BoolTensor:
    """The mask of the packed aligned tokens: each clip's count of them, from the front."""
    counts = aligned_token_mask.bool().sum(dim=1)
    return torch.arange(packed_len, device=counts.device)[None, :] < counts[:, None]


def mel_to_latent_durations(
    mel_durations: np.ndarray, latent_frames: int, downsample_factor: int
) -> np.ndarray:
    r"""
    Convert per-token durations in mel frames to latent frames, summing exactly to `latent_frames`: each token
    boundary (a cumulative sum) is divided by the VAE's time downsampling and rounded, so a token shorter than half a
    latent frame may get zero frames and no boundary moves by more than half a latent frame.
    """
    boundaries = np.cumsum(np.asarray(mel_durations, dtype=np.int64))
    latent_boundaries = np.minimum(
        np.floor(boundaries / downsample_factor + 0.5).astype(np.int64), latent_frames
    )
    if len(latent_boundaries):
        latent_boundaries[-1] = latent_frames
    return np.diff(np.concatenate([[0], latent_boundaries])).astype(np.int64)
