"""Waveform crops for Mel-VAE training, read straight from the prepared dataset's audio files."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from instructaudio_diffusers.audio import load_audio, resample, to_mono

from ..batching import item_rng
from ..data import resolve_audio_path


class MelVAECropDataset(Dataset):
    """Random fixed-length waveform crops; keys are `(index, epoch)` from `EpochSeededSampler`.

    Only the crop is read from disk (plus resampling to the VAE's rate). A clip shorter than the
    segment is zero-padded and `num_samples` says how much of the crop is real audio.
    """

    def __init__(
        self,
        rows: list[dict[str, Any]],
        dataset_dir: str,
        audio_root: str | None,
        sampling_rate: int,
        segment_samples: int,
        seed: int,
    ):
        self.rows = rows
        self.dataset_dir = dataset_dir
        self.audio_root = audio_root
        self.sampling_rate = sampling_rate
        self.segment_samples = segment_samples
        self.seed = seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, epoch = key
        row = self.rows[index]
        file_rate = int(row["sampling_rate"])
        file_frames = int(round(row["duration_s"] * file_rate))
        needed = math.ceil(self.segment_samples * file_rate / self.sampling_rate)
        start = 0
        if file_frames > needed:
            start = int(item_rng(self.seed, epoch, index).integers(0, file_frames - needed + 1))
        path = resolve_audio_path(row, self.dataset_dir, self.audio_root)
        audio, _ = sf.read(path, start=start, frames=needed, dtype="float32", always_2d=True)
        audio = resample(to_mono(audio), file_rate, self.sampling_rate)[: self.segment_samples]
        waveform = torch.zeros(self.segment_samples)
        waveform[: audio.shape[0]] = torch.from_numpy(np.ascontiguousarray(audio))
        return {"waveform": waveform, "num_samples": audio.shape[0]}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "waveform": torch.stack([item["waveform"] for item in items]),
        "num_samples": torch.tensor([item["num_samples"] for item in items]),
    }


def load_clip(
    row: dict[str, Any], dataset_dir: str, audio_root: str | None, sampling_rate: int, max_seconds: float
) -> torch.Tensor:
    """The first `max_seconds` of a clip as a `(num_samples,)` float tensor at `sampling_rate`."""
    audio, _ = load_audio(resolve_audio_path(row, dataset_dir, audio_root), sampling_rate)
    return torch.from_numpy(audio[: int(max_seconds * sampling_rate)].copy())
