"""The main job (`make demo`): one English clip, one Chinese clip, a dialogue and a music clip from the
shipped demo model, plus one PNG of their mel-spectrograms, all written into `outputs/`.

    python examples/demo.py [--model checkpoints/instructaudio-demo] [--output_dir outputs] [--steps 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from instructaudio_diffusers import write_wav
from instructaudio_diffusers.audio.plot import mel_figure
from instructaudio_diffusers.pipelines.pipeline_instructaudio import DEFAULT_INFERENCE_STEPS
from instructaudio_diffusers.pretrained import ModelNotFoundError, load_pipeline

#: (file name, instruction, text): every task and both languages the demo model was trained on.
DEMO_PROMPTS = [
    (
        "speech_en.wav",
        "A young woman speaks cheerfully at a normal pace.",
        "My sister bought fresh bread at the market this morning.",
    ),
    ("speech_zh.wav", "一位中年男士用低沉的声音慢慢地说话。", "今天天气很好，我们一起去公园散步吧。"),
    (
        "dialogue.wav",
        "A conversation: a woman speaks first and an elderly man answers.",
        "[S0] Where are you going this weekend? [S1] I am going to visit my brother in the city.",
    ),
    (
        "music.wav",
        "An upbeat pop instrumental led by a piano, happy and bright, in a major key, 120 BPM, with drums.",
        "",
    ),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        default=None,
        help="pipeline folder or Hub id (default: the shipped demo)",
    )
    parser.add_argument("--output_dir", default="outputs", help="folder for the WAVs and the PNG")
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_INFERENCE_STEPS,
        help=f"denoising steps (default {DEFAULT_INFERENCE_STEPS})",
    )
    parser.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pipe, _ = load_pipeline(args.model)
    except ModelNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.makedirs(args.output_dir, exist_ok=True)
    log_mels, titles = [], []
    mel_spectrogram = pipe.vae.mel_spectrogram()
    for name, instruction, text in DEMO_PROMPTS:
        start = time.perf_counter()
        audio = pipe(
            instruction=instruction,
            text=text,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator().manual_seed(args.seed),
            output_type="pt",
        ).audios[0]
        elapsed = time.perf_counter() - start
        path = os.path.join(args.output_dir, name)
        write_wav(path, audio.numpy(), pipe.sampling_rate)
        seconds = audio.shape[-1] / pipe.sampling_rate
        print(f"wrote {path}: {seconds:.2f} s in {elapsed:.1f} s  [{instruction}] {text}")
        with torch.no_grad():
            log_mels.append(mel_spectrogram(audio.float()[None])[0].numpy())
        # Titles name the file, not the instruction: matplotlib's default font has no Chinese glyphs.
        titles.append(f"{name} ({seconds:.1f} s)")
    png = os.path.join(args.output_dir, "mel_spectrograms.png")
    mel_figure(log_mels, pipe.sampling_rate, pipe.vae.config.hop_length, titles).savefig(png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
