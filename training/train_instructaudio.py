"""Train the InstructAudio MM-DiT on a dataset written by `prepare_dataset.py`.

    python training/train_instructaudio.py --config training/configs/instructaudio_demo.yaml
    torchrun --nproc_per_node 2 training/train_instructaudio.py --cpu --config ...   # 2 CPU processes, gloo DDP
    accelerate launch --multi_gpu --num_processes 8 training/train_instructaudio.py --config ...

The procedure (objective, batching, checkpoints, resume) is `instructaudio_diffusers.training.transformer.train`.
"""

import sys

from instructaudio_diffusers.training.checkpointing import CheckpointError
from instructaudio_diffusers.training.transformer.train import main, parse_args

if __name__ == "__main__":
    try:
        main(parse_args())
    except CheckpointError as err:  # the message names the file and what to do: no traceback needed
        sys.exit(f"train_instructaudio.py: error: {err}")
