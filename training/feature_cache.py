"""Cached features for a prepared dataset, computed with `datasets.map`: Mel-VAE posteriors and
instruction embeddings (see `prepare_dataset.py` for what each column holds and why).

The map functions are picklable objects that load their model on first use, so `datasets` can hash
them cheaply and each `num_proc` worker loads its own copy.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from utils import resolve_audio_path  # training/ is on sys.path (see prepare_dataset.py)

#: Columns the passes below add (and replace on a rerun).
CACHED_COLUMNS = (
    "posterior_mean",
    "posterior_std",
    "latent_frames",
    "instruction_embeds",
    "instruction_length",
)

# Worker count of the running map pass, read by the encoders to split CPU threads between processes.
_WORKERS = 1


class LatentEncoder:
    """`datasets.map` function adding the Mel-VAE posterior of each whole clip (layout: prepare_dataset.py)."""

    def __init__(self, vae_path: str, dataset_dir: str, audio_root: str | None, mean_only: bool):
        self.vae_path = vae_path
        self.dataset_dir = dataset_dir
        self.audio_root = audio_root
        self.mean_only = mean_only
        self._models = None

    def __getstate__(self) -> dict[str, Any]:
        # Keep the model out of datasets' fingerprint hashing and out of the pickles sent to workers.
        return {**self.__dict__, "_models": None}

    def _load(self):
        if self._models is None:
            import torch

            from instructaudio_diffusers import AutoencoderKLMel

            torch.set_num_threads(max(1, torch.get_num_threads() // max(1, _WORKERS)))
            vae = AutoencoderKLMel.from_pretrained(self.vae_path).eval()
            self._models = (vae, vae.mel_spectrogram())
        return self._models

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        import torch

        from instructaudio_diffusers.audio import load_audio

        vae, mel_spectrogram = self._load()
        means, stds, frames = [], [], []
        for i in range(len(batch["audio_path"])):
            row = {key: batch[key][i] for key in ("audio_path", "audio_path_absolute", "source_path")}
            audio, _ = load_audio(
                resolve_audio_path(row, self.dataset_dir, self.audio_root), vae.config.sampling_rate
            )
            with torch.no_grad():
                # One clip per forward: padding clips to a common length would change their edges.
                posterior = vae.encode(mel_spectrogram(torch.from_numpy(audio))).latent_dist
            means.append(posterior.mean[0].numpy())
            stds.append(posterior.std[0].numpy())
            frames.append(int(posterior.mean.shape[-1]))
        output = {"posterior_mean": means, "latent_frames": frames}
        if not self.mean_only:
            output["posterior_std"] = stds
        return output


class InstructionEncoder:
    """`datasets.map` function adding the frozen encoder's `last_hidden_state` of each instruction."""

    def __init__(self, encoder_path: str):
        self.encoder_path = encoder_path
        self._models = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_models": None}

    def _load(self):
        if self._models is None:
            import torch
            from transformers import AutoModel, AutoTokenizer

            torch.set_num_threads(max(1, torch.get_num_threads() // max(1, _WORKERS)))
            tokenizer = AutoTokenizer.from_pretrained(self.encoder_path)
            encoder = AutoModel.from_pretrained(self.encoder_path).eval()
            self._models = (tokenizer, encoder)
        return self._models

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        import torch

        tokenizer, encoder = self._load()
        # The same call as InstructAudioPipeline.encode_instruction, so cached and live embeddings agree.
        inputs = tokenizer(batch["instruction"], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask
            ).last_hidden_state
        lengths = inputs.attention_mask.sum(dim=1).tolist()
        embeds = [hidden[i, : lengths[i]].float().numpy() for i in range(len(lengths))]
        return {"instruction_embeds": embeds, "instruction_length": [int(n) for n in lengths]}


def add_cached_features(dataset, args: argparse.Namespace, dataset_dir: Path, summary: dict[str, Any]):
    """Run the requested `--precompute_*` passes; record what produced them in `summary`."""
    from datasets import Features, List, Value

    global _WORKERS
    _WORKERS = args.num_proc
    matrix = List(List(Value("float32")))
    if args.precompute_latents:
        # A rerun replaces the columns (e.g. with a newer VAE) rather than keeping stale ones.
        dataset = dataset.remove_columns(
            [c for c in ("posterior_mean", "posterior_std", "latent_frames") if c in dataset.column_names]
        )
        features = Features({**dataset.features, "posterior_mean": matrix, "latent_frames": Value("int32")})
        if not args.latents_mean_only:
            features["posterior_std"] = matrix
        encoder = LatentEncoder(
            os.path.abspath(args.vae), str(dataset_dir), args.audio_root, args.latents_mean_only
        )
        dataset = dataset.map(
            encoder,
            batched=True,
            batch_size=args.map_batch_size,
            num_proc=_num_proc(args, dataset),
            features=features,
            desc="VAE latents",
        )
        from instructaudio_diffusers import AutoencoderKLMel

        summary["latents"] = {
            "vae": os.path.abspath(args.vae),
            "vae_config": dict(AutoencoderKLMel.load_config(args.vae)),
            "columns": ["posterior_mean"] + ([] if args.latents_mean_only else ["posterior_std"]),
            "layout": "(latent_channels, latent_frames), raw posterior units",
        }
    if args.precompute_instructions:
        dataset = dataset.remove_columns(
            [c for c in ("instruction_embeds", "instruction_length") if c in dataset.column_names]
        )
        features = Features(
            {**dataset.features, "instruction_embeds": matrix, "instruction_length": Value("int32")}
        )
        dataset = dataset.map(
            InstructionEncoder(args.text_encoder),
            batched=True,
            batch_size=args.map_batch_size,
            num_proc=_num_proc(args, dataset),
            features=features,
            desc="instruction embeddings",
        )
        summary["instructions"] = {
            "text_encoder": os.path.abspath(args.text_encoder),
            "output": "last_hidden_state, (tokens, hidden_size)",
        }
    return dataset


def _num_proc(args: argparse.Namespace, dataset) -> int | None:
    workers = min(args.num_proc, len(dataset))
    return workers if workers > 1 else None
