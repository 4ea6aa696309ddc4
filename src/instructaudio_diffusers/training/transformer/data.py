"""Data for `train_instructaudio.py`: clip lengths, the training dataset, batch collation, frozen encoders.

A prepared dataset (`prepare_dataset.py`) may carry cached features: `posterior_mean` (+ `posterior_std`,
`latent_frames`) from the Mel-VAE and `instruction_embeds` from the frozen instruction encoder. Each is
used when present; otherwise the clip is decoded and encoded, or the instruction tokenized and encoded,
on the fly under `no_grad`. Both paths give the same tensors (both call `pipelines.frozen_encoders`, as the
pipeline does), so a dataset can be cached later without changing what the model learns.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...pipelines.frozen_encoders import encode_waveform, run_instruction_encoder, tokenize_instructions
from ...processing.vocab import INSTRUMENTAL_TEXT
from ...torch_utils import lengths_to_mask
from ..data import resolve_audio_path

_META_COLUMNS = ("audio_path", "audio_path_absolute", "source_path", "instruction", "text")


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """Samples after `instructaudio_diffusers.audio.resample` (scipy's `resample_poly` rounds up)."""
    if orig_sr == target_sr:
        return num_samples
    ratio = Fraction(target_sr, orig_sr).limit_denominator(1000)
    return -(-num_samples * ratio.numerator // ratio.denominator)


def latent_frames_for_samples(num_samples: int, hop_length: int, time_downsample_factor: int) -> int:
    """Latent frames the VAE gives for a waveform: `L // hop` mel frames, then `ceil(mel / r)`."""
    return -(-(num_samples // hop_length) // time_downsample_factor)


def clip_latent_frames(dataset, vae_config: dict[str, Any], time_downsample_factor: int) -> np.ndarray:
    """Latent frames of every clip, known before any audio is read (the batch sampler needs them).

    Cached latents carry their length; otherwise it follows exactly from the clip's duration and rate.
    """
    if "latent_frames" in dataset.column_names:
        return np.asarray(dataset["latent_frames"], dtype=np.int64)
    durations = dataset["duration_s"]
    rates = dataset["sampling_rate"]
    frames = [
        latent_frames_for_samples(
            resampled_length(round(duration * rate), int(rate), vae_config["sampling_rate"]),
            vae_config["hop_length"],
            time_downsample_factor,
        )
        for duration, rate in zip(durations, rates)
    ]
    return np.asarray(frames, dtype=np.int64)


class InstructAudioTrainingDataset(Dataset):
    """One item per clip: phoneme ids, the instruction (text or cached embedding), latents or a waveform.

    Args:
        dataset: a `datasets.Dataset` written by `prepare_dataset.py`.
        dataset_dir: its folder (audio paths are resolved relative to it).
        processor: the `InstructAudioProcessor` that turns text into phoneme ids.
        latent_frames: `(N,)` latent frames of each clip (from `clip_latent_frames`).
        vae_sampling_rate: rate the VAE's mel front end expects (on-the-fly encoding only).
        audio_root: where the audio now lives, if it moved since preparation.
        use_cached_latents / use_cached_instructions: read the cached columns when the dataset has them.
        use_durations: give each item its per-token `durations` (the dataset must have the column, written by
            `prepare_dataset.py --precompute_durations`).
    """

    def __init__(
        self,
        dataset,
        dataset_dir: str | os.PathLike,
        processor,
        latent_frames: np.ndarray,
        vae_sampling_rate: int,
        audio_root: str | None = None,
        use_cached_latents: bool = True,
        use_cached_instructions: bool = True,
        use_durations: bool = False,
    ):
        columns = set(dataset.column_names)
        if use_durations and "durations" not in columns:
            raise ValueError(
                "This transformer places phonemes by durations, but the dataset has no `durations` column: "
                "train an aligner (training/train_aligner.py) and run prepare_dataset.py --precompute_durations."
            )
        self.durations = dataset["durations"] if use_durations else None
        self.dataset_dir = str(dataset_dir)
        self.audio_root = audio_root
        self.processor = processor
        self.latent_frames = np.asarray(latent_frames, dtype=np.int64)
        self.vae_sampling_rate = vae_sampling_rate
        self.cached_latent_columns = (
            [c for c in ("posterior_mean", "posterior_std") if c in columns]
            if use_cached_latents and "posterior_mean" in columns
            else []
        )
        self.cached_instructions = use_cached_instructions and "instruction_embeds" in columns
        self.metadata = dataset.select_columns([c for c in _META_COLUMNS if c in columns])
        cached = self.cached_latent_columns + (["instruction_embeds"] if self.cached_instructions else [])
        # numpy format turns the nested float lists into (C, T) / (L, D) arrays without Python loops.
        self.features = dataset.select_columns(cached).with_format("numpy") if cached else None

    def __len__(self) -> int:
        return len(self.metadata)

    def phoneme_ids(self, text: str) -> list[int]:
        # Not memoised: G2P takes about a millisecond per clip, and a cache would grow with the corpus in
        # every worker.
        text = text if text and text.strip() else INSTRUMENTAL_TEXT
        return self.processor(text, padding=False, return_tensors=None)["input_ids"]

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.metadata[int(index)]
        frames = int(self.latent_frames[index])
        item: dict[str, Any] = {
            "index": int(index),
            "latent_frames": frames,
            "phoneme_ids": self.phoneme_ids(row.get("text") or ""),
            "instruction": row["instruction"],
        }
        if self.durations is not None:
            durations = self.durations[int(index)]
            if len(durations) != len(item["phoneme_ids"]) or sum(durations) != frames:
                raise ValueError(
                    f"Clip {index}: its cached durations ({len(durations)} tokens, {sum(durations)} frames) do not "
                    f"match its text ({len(item['phoneme_ids'])} tokens) and latents ({frames} frames); the "
                    "processor or the VAE changed since --precompute_durations: run it again."
                )
            item["durations"] = durations
        features = self.features[int(index)] if self.features is not None else {}
        for column in self.cached_latent_columns:
            item[column] = np.asarray(features[column], dtype=np.float32)[:, :frames]
        if self.cached_instructions:
            item["instruction_embeds"] = np.asarray(features["instruction_embeds"], dtype=np.float32)
        if not self.cached_latent_columns:
            item["waveform"] = self._load_waveform(row)
        return item

    def _load_waveform(self, row: dict[str, Any]) -> np.ndarray:
        from instructaudio_diffusers.audio import load_audio

        audio, _ = load_audio(
            resolve_audio_path(row, self.dataset_dir, self.audio_root), self.vae_sampling_rate
        )
        return audio


class InstructAudioCollator:
    """Pads a list of items into a batch of tensors.

    Keys: `indices`, `latent_frames` `(B,)`; `phoneme_ids`, `phoneme_attention_mask` `(B, P)` (and
    `phoneme_durations` `(B, P)` when the items have durations); either
    `posterior_mean` [+ `posterior_std`] `(B, C, T)` or `waveforms` `(B, S)` + `num_samples` `(B,)`; either
    `instruction_embeds` `(B, L, D)` or `instruction_input_ids` `(B, L)`, with `instruction_attention_mask`.

    Args:
        tokenizer: the instruction encoder's tokenizer, called through `tokenize_instructions` as the pipeline
            calls it (only used for items without cached embeddings).
    """

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {
            "indices": torch.tensor([item["index"] for item in items]),
            "latent_frames": torch.tensor([item["latent_frames"] for item in items]),
        }
        batch["phoneme_ids"], batch["phoneme_attention_mask"] = _pad_ids(
            [item["phoneme_ids"] for item in items]
        )
        if "durations" in items[0]:
            batch["phoneme_durations"], _ = _pad_ids([item["durations"] for item in items])
        if "posterior_mean" in items[0]:
            for column in ("posterior_mean", "posterior_std"):
                if column in items[0]:
                    batch[column] = _pad_last([torch.from_numpy(item[column]) for item in items])
        else:
            batch["waveforms"] = _pad_last([torch.from_numpy(item["waveform"]) for item in items])
            batch["num_samples"] = torch.tensor([len(item["waveform"]) for item in items])
        if "instruction_embeds" in items[0]:
            embeds = [torch.from_numpy(item["instruction_embeds"]) for item in items]
            batch["instruction_embeds"] = _pad_last([e.T for e in embeds]).transpose(1, 2).contiguous()
            batch["instruction_attention_mask"] = lengths_to_mask(
                torch.tensor([len(e) for e in embeds]), batch["instruction_embeds"].shape[1]
            )
        else:
            if self.tokenizer is None:
                raise ValueError(
                    "the dataset has no cached instruction embeddings, so the collator needs a tokenizer."
                )
            tokens = tokenize_instructions(self.tokenizer, [item["instruction"] for item in items])
            batch["instruction_input_ids"] = tokens.input_ids
            batch["instruction_attention_mask"] = tokens.attention_mask.bool()
        return batch


def _pad_ids(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists with 0 (the processor's `<pad>`); returns `(ids, mask)` of shape `(B, max_len)`."""
    length = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), length, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        ids[i, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return ids, lengths_to_mask(torch.tensor([len(s) for s in sequences]), length)


def _pad_last(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Stack tensors that differ only in their last dimension, zero-padding it to the longest."""
    length = max(t.shape[-1] for t in tensors)
    return torch.stack([torch.nn.functional.pad(t, (0, length - t.shape[-1])) for t in tensors])


# ---------------------------------------------------------------------------------------------- frozen encoders
@torch.no_grad()
def encode_latents(
    batch: dict[str, torch.Tensor],
    vae,
    mel_spectrogram,
    generator: torch.Generator,
    sample_posterior: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised latents `x0` `(B, C, T)` (zero at padding) and the frame mask `(B, T)`.

    With a posterior std (cached or computed) and `sample_posterior`, the latents are `mean + std * noise`,
    the same kind of latents the VAE decoder was trained on; otherwise the posterior mean.
    """
    frames = batch["latent_frames"].to(device)
    max_frames = int(frames.max())
    frame_mask = lengths_to_mask(frames, max_frames)
    if "posterior_mean" in batch:
        raw = batch["posterior_mean"][..., :max_frames].to(device, torch.float32)
        if sample_posterior and "posterior_std" in batch:
            # Per clip at its own length, in batch order, exactly as the live path below draws it: a clip's
            # noise then depends neither on its batch-mates' lengths nor on whether features were cached.
            noise = torch.zeros_like(raw)
            for i, count in enumerate(frames.tolist()):
                noise[i, :, :count] = torch.randn(raw.shape[1], count, generator=generator).to(device)
            raw = raw + batch["posterior_std"][..., :max_frames].to(device, torch.float32) * noise
    else:
        raw = torch.zeros(len(frames), vae.config.latent_channels, max_frames, device=device)
        for i, num_samples in enumerate(batch["num_samples"].tolist()):
            waveform = batch["waveforms"][i, :num_samples].to(device, torch.float32)
            posterior = encode_waveform(vae, mel_spectrogram, waveform)
            if sample_posterior:
                noise = torch.randn(posterior.mean.shape, generator=generator).to(
                    device, posterior.mean.dtype
                )
                latents = posterior.mean + posterior.std * noise
            else:
                latents = posterior.mean
            count = int(frames[i])
            if latents.shape[-1] < count:
                # The sampler budgeted this clip from its duration; a shorter file means the dataset is stale.
                raise ValueError(
                    f"clip {int(batch['indices'][i])} encodes to {latents.shape[-1]} latent frames but its "
                    f"duration says {count}: re-run prepare_dataset.py on the current audio."
                )
            raw[i, :, :count] = latents[0, :, :count].float()
    return vae.normalize_latents(raw) * frame_mask[:, None], frame_mask


@torch.no_grad()
def encode_instructions(
    batch: dict[str, torch.Tensor], text_encoder, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Instruction hidden states `(B, L, D)` and mask `(B, L)`, cached or from the frozen encoder."""
    mask = batch["instruction_attention_mask"].to(device).bool()
    if "instruction_embeds" in batch:
        return batch["instruction_embeds"].to(device, torch.float32), mask
    hidden = run_instruction_encoder(text_encoder, batch["instruction_input_ids"].to(device), mask)
    return hidden.float(), mask


def describe_dataset(
    rows_task: list[str], durations: list[float], rows_language: list[str] | None = None
) -> dict[str, Any]:
    """Counts for logs and the model card: clips, hours, clips per task and (when known) per language."""
    tasks: dict[str, int] = {}
    for task in rows_task:
        tasks[task] = tasks.get(task, 0) + 1
    facts = {"clips": len(durations), "hours": float(math.fsum(durations)) / 3600.0, "clips_per_task": tasks}
    if rows_language is not None:
        languages: dict[str, int] = {}
        for language in rows_language:
            languages[language or ""] = languages.get(language or "", 0) + 1
        facts["clips_per_language"] = languages
    return facts
