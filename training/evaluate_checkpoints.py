"""Held-out intelligibility and voice of training checkpoints: the training curve of a run (WER against steps).

    python training/evaluate_checkpoints.py --pipeline checkpoints/instructaudio-demo \
        --checkpoints runs/demo/instructaudio --cases evaluation/demo_held_out_cases.jsonl \
        --task speech --language en --limit 30 --out runs/demo/curve.jsonl

Options and what it measures: `instructaudio_diffusers.training.checkpoint_evaluation`.
"""

import os

if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub reads it
    from instructaudio_diffusers.training.checkpoint_evaluation import main, parse_args

    main(parse_args())
