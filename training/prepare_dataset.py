"""Validate an audio corpus and write it as a `datasets.Dataset` for the training scripts.

    python training/prepare_dataset.py --audio_dir data/corpus --metadata data/corpus/metadata.jsonl \\
        --output_dir data/prepared
    python training/prepare_dataset.py --output_dir data/prepared \\
        --precompute_latents --vae runs/mel_vae --precompute_instructions --text_encoder MINILM_DIR

The metadata format, the checks and the cached columns: `instructaudio_diffusers.training.preparation`.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it
    from instructaudio_diffusers.training.preparation import main, parse_args

    sys.exit(main(parse_args()))
