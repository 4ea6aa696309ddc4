"""Check phoneme durations against the demo corpus synthesizers' own phone timings.

    python training/check_alignment.py reference --corpus_dir data/demo_corpus --output_dir runs/align-truth
    python training/check_alignment.py score --dataset data/prepared [--corpus_dir data/demo_corpus]

What each command writes and reads: `instructaudio_diffusers.training.demo_corpus.check`.
"""

import sys

from instructaudio_diffusers.training.demo_corpus.check import main, parse_args

if __name__ == "__main__":
    sys.exit(main(parse_args()))
