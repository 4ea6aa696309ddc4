"""Export a trained transformer and Mel-VAE as a small, shippable pipeline folder.

    python training/export_pipeline.py --transformer runs/demo/instructaudio/transformer \\
        --vae runs/demo/instructaudio/vae --output_dir checkpoints/instructaudio-demo \\
        --card training/configs/demo_model_card.md --evaluation outputs/eval/summary.md

Options and what the folder holds: `instructaudio_diffusers.training.export`.
"""

import sys

from instructaudio_diffusers.training.export import main

if __name__ == "__main__":
    sys.exit(main())
