"""Training the Mel-VAE (`training/train_mel_vae.py`)."""
