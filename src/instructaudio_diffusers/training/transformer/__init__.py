"""Training the InstructAudio MM-DiT (`training/train_instructaudio.py`)."""
