"""Train the phoneme aligner (`PhonemeAlignerModel`) on a prepared dataset: a short stage before the transformer.

    python training/train_aligner.py --dataset_dir data/prepared --vae runs/mel_vae --output_dir runs/aligner

The aligner learns from the dataset alone (its audio and its text), so it works on any corpus that
`prepare_dataset.py` accepts. Its durations are then cached in the dataset as a column, like the latents:

    python training/prepare_dataset.py --output_dir data/prepared --precompute_durations --aligner runs/aligner

Log-mel frames of every clip with words are computed once and kept in memory (float16; about 55 MB per hour of
audio). A small share of the clips is held out; the saved model is the one with the lowest held-out forward-sum
loss, so training longer never makes the saved aligner worse. `--reference_durations` (a JSONL of
`{"id": ..., "durations": [...]}` in latent frames per token, e.g. a synthesizer's own timings) adds the
boundary agreement with them to the log.

Writes `<output_dir>/config.json` + `diffusion_pytorch_model.safetensors` (atomically) and
`<output_dir>/training_log.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .data import load_prepared_dataset, resolve_audio_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_dir", required=True, help="prepare_dataset.py output folder.")
    parser.add_argument(
        "--vae", required=True, help="The AutoencoderKLMel folder whose mel front end and frame rate to use."
    )
    parser.add_argument("--output_dir", required=True, help="Where the aligner folder is written.")
    parser.add_argument(
        "--processor", default=None, help="Saved InstructAudioProcessor folder (default: a new one)."
    )
    parser.add_argument(
        "--audio_root", default=None, help="Where the audio now lives, if it moved since preparation."
    )
    parser.add_argument("--max_train_steps", type=int, default=3000)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_mel_frames_per_batch", type=int, default=6000, help="Frame budget of a batch.")
    parser.add_argument("--validation_fraction", type=float, default=0.02)
    parser.add_argument("--validation_steps", type=int, default=250)
    parser.add_argument("--max_clips", type=int, default=None, help="Use only the first N clips with words.")
    parser.add_argument(
        "--reference_durations", default=None, help="JSONL of {id, durations} to score against."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)."
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.max_train_steps < 1 or not 0 < args.validation_fraction < 0.5:
        parser.error("need --max_train_steps >= 1 and 0 < --validation_fraction < 0.5.")
    if not (Path(args.dataset_dir) / "state.json").is_file():
        parser.error(
            f"--dataset_dir {args.dataset_dir} is not a prepared dataset (no state.json); "
            "run training/prepare_dataset.py first."
        )
    return args


def build_aligner(vae_path: str, processor):
    """A new aligner whose front end and frame rate are the VAE's, and which gives the processor's never-heard
    tokens (word boundaries, language and speaker tags) no frames."""
    from instructaudio_diffusers import AutoencoderKLMel
    from instructaudio_diffusers.models.aligner import PhonemeAlignerModel
    from instructaudio_diffusers.processing.vocab import SILENT_TOKENS

    vae = AutoencoderKLMel.from_config(AutoencoderKLMel.load_config(vae_path))
    mel_settings = vae.mel_settings.as_dict()
    return PhonemeAlignerModel(
        vocab_size=max(512, len(processor)),
        num_mel_bins=mel_settings.pop("n_mels"),
        **mel_settings,
        time_downsample_factor=vae.time_downsample_factor,
        silent_token_ids=sorted(
            processor.vocab[token] for token in SILENT_TOKENS if token in processor.vocab
        ),
    )


def load_clips(args: argparse.Namespace, dataset, processor, mel_spectrogram) -> list[dict]:
    """Log-mel (float16) and token ids of every clip with words."""
    from tqdm.auto import tqdm

    from instructaudio_diffusers.audio import load_audio

    clips = []
    rows = dataset.select_columns(
        [
            c
            for c in ("id", "audio_path", "audio_path_absolute", "source_path", "text")
            if c in dataset.column_names
        ]
    )
    for index, row in enumerate(tqdm(rows, desc="log-mel", mininterval=10)):
        if not (row.get("text") or "").strip():
            continue
        audio, _ = load_audio(
            resolve_audio_path(row, args.dataset_dir, args.audio_root), mel_spectrogram.sampling_rate
        )
        with torch.no_grad():
            mel = mel_spectrogram(torch.from_numpy(audio)[None])[0]
        ids = processor(row["text"], padding=False, return_tensors=None)["input_ids"]
        if len(ids) > mel.shape[-1]:
            continue  # cannot be aligned (more tokens than frames); prepare_dataset reports such rows
        clips.append({"id": row.get("id", str(index)), "mel": mel.half().numpy(), "ids": ids})
        if args.max_clips and len(clips) >= args.max_clips:
            break
    return clips


def make_batches(clips: list[dict], budget: int, rng: np.random.Generator) -> list[list[int]]:
    """Clips of similar length together, at most `budget` padded mel frames per batch, in a random order."""
    order = sorted(range(len(clips)), key=lambda i: clips[i]["mel"].shape[-1])
    batches, current = [], []
    for index in order:
        frames = clips[index]["mel"].shape[-1]
        if current and frames * (len(current) + 1) > budget:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def collate(clips: list[dict], indices: list[int], device) -> tuple[torch.Tensor, ...]:
    from instructaudio_diffusers.torch_utils import lengths_to_mask

    mels = [clips[i]["mel"] for i in indices]
    ids = [clips[i]["ids"] for i in indices]
    frames = torch.tensor([m.shape[-1] for m in mels])
    tokens = torch.tensor([len(t) for t in ids])
    mel = torch.zeros(len(indices), mels[0].shape[0], int(frames.max()))
    phoneme_ids = torch.zeros(len(indices), int(tokens.max()), dtype=torch.long)
    for row, (m, t) in enumerate(zip(mels, ids)):
        mel[row, :, : m.shape[-1]] = torch.from_numpy(m.astype(np.float32))
        phoneme_ids[row, : len(t)] = torch.tensor(t)
    mel_mask = lengths_to_mask(frames, mel.shape[-1])
    phoneme_mask = lengths_to_mask(tokens, phoneme_ids.shape[1])
    return mel.to(device), mel_mask.to(device), phoneme_ids.to(device), phoneme_mask.to(device)


@torch.no_grad()
def evaluate(model, clips, batches, device, references: dict | None) -> dict[str, float]:
    """Held-out forward-sum loss, and the boundary agreement with reference durations when given."""
    from instructaudio_diffusers.models.aligner import mel_to_latent_durations

    model.eval()
    losses, errors = [], []
    for indices in batches:
        mel, mel_mask, phoneme_ids, phoneme_mask = collate(clips, indices, device)
        output = model(mel, mel_mask, phoneme_ids, phoneme_mask)
        losses.append(
            float(model.forward_sum_loss(output.log_attention, mel_mask, output.aligned_token_mask))
        )
        if references:
            durations = model.hard_durations(output.log_attention, mel_mask, output.aligned_token_mask)
            durations = durations.cpu().numpy()
            for row, index in enumerate(indices):
                reference = references.get(clips[index]["id"])
                if reference is None:
                    continue
                latent = mel_to_latent_durations(
                    durations[row, : len(clips[index]["ids"])],
                    int(sum(reference)),
                    model.config.time_downsample_factor,
                )
                if len(latent) == len(reference):
                    errors.append(np.abs(np.cumsum(latent)[:-1] - np.cumsum(reference)[:-1]))
    model.train()
    result = {"validation_loss": float(np.mean(losses))}
    if errors:
        boundary_errors = np.concatenate(errors)
        result["median_boundary_error_frames"] = float(np.median(boundary_errors))
        result["within_2_frames"] = float(np.mean(boundary_errors <= 2))
    return result


def save_atomically(model, output_dir: Path) -> None:
    partial = output_dir.with_name(output_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    model.save_pretrained(partial)
    for name in os.listdir(partial):
        os.replace(partial / name, output_dir / name)
    partial.rmdir()


def main(args: argparse.Namespace) -> dict[str, float]:
    from instructaudio_diffusers import InstructAudioProcessor

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processor = (
        InstructAudioProcessor.from_pretrained(args.processor) if args.processor else InstructAudioProcessor()
    )
    model = build_aligner(args.vae, processor).to(args.device)
    dataset = load_prepared_dataset(args.dataset_dir)
    clips = load_clips(args, dataset, processor, model.mel_spectrogram())
    if len(clips) < 2:
        raise SystemExit(f"{args.dataset_dir} has {len(clips)} clips with words; the aligner needs more.")
    order = rng.permutation(len(clips))
    num_validation = max(1, int(len(clips) * args.validation_fraction))
    validation = [clips[i] for i in order[:num_validation]]
    train = [clips[i] for i in order[num_validation:]]
    validation_batches = make_batches(validation, args.max_mel_frames_per_batch, np.random.default_rng(0))
    references = None
    if args.reference_durations:
        with open(args.reference_durations, encoding="utf-8") as handle:
            references = {row["id"]: row["durations"] for row in map(json.loads, handle)}
    print(f"aligner: {len(train)} training and {len(validation)} held-out clips", flush=True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=1e-6)
    warmup = min(200, args.max_train_steps // 10 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    log_path = output_dir / "training_log.jsonl"
    best, step, started, batches = math.inf, 0, time.time(), []
    with open(log_path, "a", encoding="utf-8") as log:
        while step < args.max_train_steps:
            if not batches:
                batches = make_batches(train, args.max_mel_frames_per_batch, rng)
            mel, mel_mask, phoneme_ids, phoneme_mask = collate(train, batches.pop(), args.device)
            output = model(mel, mel_mask, phoneme_ids, phoneme_mask)
            loss = model.forward_sum_loss(output.log_attention, mel_mask, output.aligned_token_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            if step % args.validation_steps == 0 or step == args.max_train_steps:
                scores = {
                    "step": step,
                    "train_loss": float(loss.detach()),
                    "seconds": round(time.time() - started, 1),
                }
                scores.update(evaluate(model, validation, validation_batches, args.device, references))
                if scores["validation_loss"] < best:
                    best = scores["validation_loss"]
                    save_atomically(model, output_dir)
                    scores["saved"] = True
                log.write(json.dumps(scores) + "\n")
                log.flush()
                print(json.dumps(scores), flush=True)
    return {"best_validation_loss": best}
