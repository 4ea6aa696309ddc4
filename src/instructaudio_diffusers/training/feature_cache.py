"""Cached features for a prepared dataset, computed with `datasets.map`: Mel-VAE posteriors, instruction
embeddings and per-token durations from the aligner (see `prepare_dataset.py` for what each column holds).

The map functions are picklable objects that load their model on first use, so `datasets` can hash
them cheaply and each `num_proc` worker loads its own copy.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .data import resolve_audio_path

#: Columns the passes below add (and replace on a rerun).
CACHED_COLUMNS = (
    "posterior_mean",
    "posterior_std",
    "latent_frames",
    "instruction_embeds",
    "instruction_length",
    "durations",
    "alignment_cost",
)
#: A clip whose aligned tokens are mostly zero latent frames long, or whose per-frame alignment cost is this
#: many median absolute deviations above the corpus median, is rejected (`alignment_failed` in bad_rows.jsonl).
MAX_ZERO_LENGTH_PHONES = 0.5
MAX_COST_DEVIATIONS = 8.0

# Worker count of the running map pass, read by the encoders to split CPU threads between processes.
_WORKERS = 1


class _LazyMapFunction:
    """Base of the map functions: the models load on first call (`_build`), with the CPU threads split between
    the `num_proc` workers, and stay out of pickles and of datasets' fingerprint hashing."""

    _models = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_models": None}

    def _build(self):
        raise NotImplementedError

    def _load(self):
        if self._models is None:
            import torch

            torch.set_num_threads(max(1, torch.get_num_threads() // max(1, _WORKERS)))
            self._models = self._build()
        return self._models


def _clip_audio(batch: dict[str, list], index: int, dataset_dir: str, audio_root: str | None, rate: int):
    """The waveform of row `index` of a map batch, at `rate` Hz."""
    from instructaudio_diffusers.audio import load_audio

    row = {key: batch[key][index] for key in ("audio_path", "audio_path_absolute", "source_path")}
    audio, _ = load_audio(resolve_audio_path(row, dataset_dir, audio_root), rate)
    return audio


class LatentEncoder(_LazyMapFunction):
    """`datasets.map` function adding the Mel-VAE posterior of each whole clip (layout: prepare_dataset.py)."""

    def __init__(self, vae_path: str, dataset_dir: str, audio_root: str | None, mean_only: bool):
        self.vae_path = vae_path
        self.dataset_dir = dataset_dir
        self.audio_root = audio_root
        self.mean_only = mean_only

    def _build(self):
        from instructaudio_diffusers import AutoencoderKLMel

        vae = AutoencoderKLMel.from_pretrained(self.vae_path).eval()
        return vae, vae.mel_spectrogram()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        import torch

        from ..pipelines.frozen_encoders import encode_waveform

        vae, mel_spectrogram = self._load()
        means, stds, frames = [], [], []
        for i in range(len(batch["audio_path"])):
            audio = _clip_audio(batch, i, self.dataset_dir, self.audio_root, vae.config.sampling_rate)
            posterior = encode_waveform(vae, mel_spectrogram, torch.from_numpy(audio))
            means.append(posterior.mean[0].numpy())
            stds.append(posterior.std[0].numpy())
            frames.append(int(posterior.mean.shape[-1]))
        output = {"posterior_mean": means, "latent_frames": frames}
        if not self.mean_only:
            output["posterior_std"] = stds
        return output


class DurationAligner(_LazyMapFunction):
    """`datasets.map` function adding each clip's per-token durations (latent frames, summing to the clip's
    latent frames) from a trained `PhonemeAlignerModel`, and its per-frame alignment cost."""

    def __init__(
        self, aligner_path: str, processor_path: str | None, dataset_dir: str, audio_root: str | None
    ):
        self.aligner_path = aligner_path
        self.processor_path = processor_path
        self.dataset_dir = dataset_dir
        self.audio_root = audio_root

    def _build(self):
        from instructaudio_diffusers import InstructAudioProcessor
        from instructaudio_diffusers.models.aligner import PhonemeAlignerModel

        aligner = PhonemeAlignerModel.from_pretrained(self.aligner_path).eval()
        processor = (
            InstructAudioProcessor.from_pretrained(self.processor_path)
            if self.processor_path
            else InstructAudioProcessor()
        )
        return aligner, aligner.mel_spectrogram(), processor

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        import torch

        from instructaudio_diffusers.models.aligner import mel_to_latent_durations
        from instructaudio_diffusers.processing.vocab import INSTRUMENTAL_TEXT

        aligner, mel_spectrogram, processor = self._load()
        factor = aligner.config.time_downsample_factor
        durations, costs = [], []
        for i in range(len(batch["audio_path"])):
            audio = _clip_audio(batch, i, self.dataset_dir, self.audio_root, aligner.config.sampling_rate)
            text = batch["text"][i] if (batch["text"][i] or "").strip() else INSTRUMENTAL_TEXT
            ids = processor(text, padding=False, return_tensors=None)["input_ids"]
            with torch.no_grad():
                mel = mel_spectrogram(torch.from_numpy(audio))
                mel_frames = mel.shape[-1]
                latent_frames = -(-mel_frames // factor)
                if len(ids) > mel_frames:  # cannot be aligned: fewer frames than tokens
                    durations.append([])
                    costs.append(float("inf"))
                    continue
                mel_mask = torch.ones(1, mel_frames, dtype=torch.bool)
                phoneme_ids = torch.tensor([ids])
                phoneme_mask = torch.ones_like(phoneme_ids, dtype=torch.bool)
                output = aligner(mel, mel_mask, phoneme_ids, phoneme_mask)
                cost = aligner.forward_sum_loss(output.log_attention, mel_mask, output.aligned_token_mask)
                mel_durations = aligner.hard_durations(
                    output.log_attention, mel_mask, output.aligned_token_mask
                )[0].numpy()
            durations.append(mel_to_latent_durations(mel_durations, latent_frames, factor).tolist())
            costs.append(float(cost))
        return {"durations": durations, "alignment_cost": costs}


def alignment_problems(dataset, processor) -> dict[int, str]:
    """Rows whose alignment fails a sanity check, by index, with the reason in words."""
    import numpy as np

    costs = np.asarray(dataset["alignment_cost"], dtype=np.float64)
    finite = costs[np.isfinite(costs)]
    median = float(np.median(finite)) if len(finite) else 0.0
    spread = float(np.median(np.abs(finite - median))) if len(finite) else 0.0
    limit = median + MAX_COST_DEVIATIONS * max(spread, 1e-6)
    problems = {}
    for index, (text, durations, cost) in enumerate(zip(dataset["text"], dataset["durations"], costs)):
        if not durations:
            problems[index] = "more tokens than mel frames: the clip is too short for its text"
            continue
        if cost > limit:
            problems[index] = f"alignment cost {cost:.3f} per frame, above the corpus limit {limit:.3f}"
            continue
        if not (text or "").strip():
            continue
        tokens = processor.convert_ids_to_tokens(
            processor(text, padding=False, return_tensors=None)["input_ids"]
        )
        phones = [d for token, d in zip(tokens, durations) if not token.startswith(("<", "["))]
        if phones and np.mean(np.asarray(phones) == 0) > MAX_ZERO_LENGTH_PHONES:
            problems[index] = f"{np.mean(np.asarray(phones) == 0):.0%} of the phones got no latent frame"
    return problems


class InstructionEncoder(_LazyMapFunction):
    """`datasets.map` function adding the frozen encoder's `last_hidden_state` of each instruction."""

    def __init__(self, encoder_path: str):
        self.encoder_path = encoder_path

    def _build(self):
        from transformers import AutoModel, AutoTokenizer

        return AutoTokenizer.from_pretrained(self.encoder_path), AutoModel.from_pretrained(
            self.encoder_path
        ).eval()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        from ..pipelines.frozen_encoders import run_instruction_encoder, tokenize_instructions

        tokenizer, encoder = self._load()
        # The pipeline's own calls, so cached and live embeddings agree.
        inputs = tokenize_instructions(tokenizer, batch["instruction"])
        hidden = run_instruction_encoder(encoder, inputs.input_ids, inputs.attention_mask)
        lengths = inputs.attention_mask.sum(dim=1).tolist()
        embeds = [hidden[i, : lengths[i]].float().numpy() for i in range(len(lengths))]
        return {"instruction_embeds": embeds, "instruction_length": [int(n) for n in lengths]}


def add_cached_features(
    dataset, args: argparse.Namespace, dataset_dir: Path, summary: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]]]:
    """Run the requested `--precompute_*` passes; record what produced them in `summary`.

    Returns the dataset and the rows it dropped (each a bad_rows.jsonl record: a failed alignment)."""
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
    bad_rows = []
    if getattr(args, "precompute_durations", False):
        dataset, bad_rows = _add_durations(dataset, args, dataset_dir, summary)
    return dataset, bad_rows


def _add_durations(dataset, args: argparse.Namespace, dataset_dir: Path, summary: dict[str, Any]):
    from datasets import Features, List, Value

    from instructaudio_diffusers import InstructAudioProcessor

    dataset = dataset.remove_columns(
        [c for c in ("durations", "alignment_cost") if c in dataset.column_names]
    )
    features = Features(
        {**dataset.features, "durations": List(Value("int32")), "alignment_cost": Value("float32")}
    )
    dataset = dataset.map(
        DurationAligner(os.path.abspath(args.aligner), args.processor, str(dataset_dir), args.audio_root),
        batched=True,
        batch_size=args.map_batch_size,
        num_proc=_num_proc(args, dataset),
        features=features,
        desc="aligned durations",
    )
    processor = (
        InstructAudioProcessor.from_pretrained(args.processor) if args.processor else InstructAudioProcessor()
    )
    problems = alignment_problems(dataset, processor)
    bad_rows = [
        {
            "path": dataset[index]["source_path"],
            "reason": "alignment_failed",
            "problems": [["alignment_failed", detail]],
            "row": {"instruction": dataset[index]["instruction"], "text": dataset[index]["text"]},
        }
        for index, detail in problems.items()
    ]
    if problems:
        keep = sorted(set(range(len(dataset))) - set(problems))
        dataset = dataset.select(keep)
    summary["durations"] = {
        "aligner": os.path.abspath(args.aligner),
        "layout": "latent frames per processor token, summing to latent_frames",
        "rejected": len(bad_rows),
    }
    return dataset, bad_rows


def _num_proc(args: argparse.Namespace, dataset) -> int | None:
    workers = min(args.num_proc, len(dataset))
    return workers if workers > 1 else None
