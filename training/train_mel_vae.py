"""Train the Mel-VAE (`AutoencoderKLMel`) on a dataset written by `prepare_dataset.py`.

    python training/train_mel_vae.py --config training/configs/mel_vae_demo.json
    accelerate launch --config_file training/configs/accelerate_single_cpu.yaml training/train_mel_vae.py \\
        --dataset_dir data/prepared --vae_config configs/demo/vae/config.json --output_dir runs/mel_vae

The procedure (losses, latent statistics, checkpoints, resume) is `instructaudio_diffusers.training.mel_vae.train`.
"""

import sys

from instructaudio_diffusers.training.checkpointing import CheckpointError
from instructaudio_diffusers.training.mel_vae.train import main, parse_args

if __name__ == "__main__":
    try:
        main(parse_args())
    except CheckpointError as err:  # the message names the file and what to do: no traceback needed
        sys.exit(f"train_mel_vae.py: error: {err}")
