"""What the training scripts in the repository's `training/` folder share, and what the tests import.

The scripts are thin entry points (`python training/train_instructaudio.py ...`, `accelerate launch ...`); the
procedures live here, one home for each concern:

    args            options every training script takes, `--config` files, early checks
    runtime         the run's Accelerator, optimizer, learning-rate schedule, and its clean end
    data            prepared datasets: finding, loading, subsetting, locating audio
    batching        data order: batch samplers, keyed random streams, the loop's position
    checkpointing   `checkpoint-N/` folders: written atomically, read without running code
    tracking        trackers, TensorBoard audio and images, atomic JSON, Hub upload
    vocoder         the vocoder of validation audio
    transformer/    the MM-DiT: options, data, objective, outputs, the training procedure
    mel_vae/        the Mel-VAE: data, objective, the training procedure
    export          a trained transformer and VAE as a shippable pipeline folder
    demo_corpus/    the synthetic demo corpus: its generator and its alignment check

Nothing in the rest of the package imports this subpackage; heavy dependencies (accelerate's trackers,
datasets, matplotlib) are imported where they are used.
"""
