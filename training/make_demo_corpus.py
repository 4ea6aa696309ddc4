"""Build the synthetic demo corpus (docs/design.md §5): speech, dialogue and music with instructions.

    python training/make_demo_corpus.py --output_dir data/demo_corpus [--scale 1.0] [--num_workers 2] [--seed 0]
    python training/make_demo_corpus.py --output_dir data/contrast_corpus --contrast_pairs 20 [--seed 0]

The generator is the package `instructaudio_diffusers.training.demo_corpus` (output layout: its `build` module).
"""

import sys

from instructaudio_diffusers.training.demo_corpus.build import main, parse_args

if __name__ == "__main__":
    sys.exit(main(parse_args()))
