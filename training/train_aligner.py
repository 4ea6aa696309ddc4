"""Train the phoneme aligner whose durations `prepare_dataset.py --precompute_durations` stores.

    python training/train_aligner.py --dataset_dir data/prepared --vae runs/mel_vae --output_dir runs/aligner

Options and the procedure: `instructaudio_diffusers.training.aligner`.
"""

import os

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it
    from instructaudio_diffusers.training.aligner import main, parse_args

    main(parse_args())
