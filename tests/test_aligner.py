"""The phoneme aligner: its prior, that it learns a known alignment, hard durations, and the dataset pass that caches
durations (training/train_aligner.py, prepare_dataset.py --precompute_durations)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.stats import betabinom

from instructaudio_diffusers.models.aligner import (
    PhonemeAlignerModel,
    beta_binomial_log_prior,
    mel_to_latent_durations,
)
from instructaudio_diffusers.training import aligner as train_aligner
from instructaudio_diffusers.training import preparation as prepare_dataset
from instructaudio_diffusers.training.data import load_prepared_dataset
from test_training_data import SAMPLING_RATE, TINY_VAE, row, tone

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("single_thread")


def test_prior_is_the_beta_binomial_distribution():
    log_prior = beta_binomial_log_prior(torch.tensor([5, 3]), torch.tensor([12, 4]), 6, 14, scaling=1.0)
    for sample, (tokens, frames) in enumerate([(5, 12), (3, 4)]):
        expected = np.array(
            [betabinom(tokens, j, frames + 1 - j).pmf(np.arange(tokens)) for j in range(1, frames + 1)]
        )
        np.testing.assert_allclose(
            np.exp(log_prior[sample, :frames, :tokens].numpy()), expected, rtol=1e-4, atol=1e-7
        )
        assert log_prior[sample, frames:].eq(0).all() and log_prior[sample, :, tokens:].eq(0).all()


def synthetic_batch(generator, patterns, batch_size=8, silent_id=None):
    """Clips whose frames are a noisy copy of their token's own pattern, each token 2-8 frames long; with
    `silent_id`, about a quarter of the tokens are that id and have no frames (like word boundaries)."""
    clips = []
    for _ in range(batch_size):
        length = int(torch.randint(5, 15, (), generator=generator))
        ids = torch.randint(1, len(patterns), (length,), generator=generator)
        durations = torch.randint(2, 9, (length,), generator=generator)
        if silent_id is not None:
            silent = torch.rand(length, generator=generator) < 0.25
            silent[0] = False
            ids[silent], durations[silent] = silent_id, 0
        frames = torch.cat(
            [patterns[i][:, None].expand(-1, int(d)) for i, d in zip(ids, durations) if d > 0], dim=1
        )
        clips.append((ids, durations, frames + 0.3 * torch.randn(frames.shape, generator=generator)))
    tokens, frames = max(len(c[0]) for c in clips), max(c[2].shape[1] for c in clips)
    mel = torch.zeros(batch_size, patterns.shape[1], frames)
    ids, durations = (
        torch.zeros(batch_size, tokens, dtype=torch.long),
        torch.zeros(batch_size, tokens, dtype=torch.long),
    )
    mel_mask, phoneme_mask = (
        torch.zeros(batch_size, frames, dtype=torch.bool),
        torch.zeros(batch_size, tokens, dtype=torch.bool),
    )
    for b, (clip_ids, clip_durations, clip_mel) in enumerate(clips):
        ids[b, : len(clip_ids)], durations[b, : len(clip_ids)] = clip_ids, clip_durations
        mel[b, :, : clip_mel.shape[1]] = clip_mel
        mel_mask[b, : clip_mel.shape[1]], phoneme_mask[b, : len(clip_ids)] = True, True
    return mel, mel_mask, ids, phoneme_mask, durations


@pytest.mark.parametrize("silent_id", [None, 20], ids=["every-token-heard", "silent-tokens"])
def test_the_forward_sum_objective_learns_a_known_alignment(silent_id):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    patterns = 2 * torch.randn(20, 80, generator=generator)
    model = PhonemeAlignerModel(vocab_size=21, silent_token_ids=None if silent_id is None else [silent_id])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def boundary_errors():
        with torch.no_grad():
            mel, mel_mask, ids, phoneme_mask, durations = synthetic_batch(generator, patterns, 16, silent_id)
            output = model(mel, mel_mask, ids, phoneme_mask)
            hard = model.hard_durations(output.log_attention, mel_mask, output.aligned_token_mask)
        if silent_id is not None:
            assert hard[ids == silent_id].eq(0).all() and hard[output.aligned_token_mask].min() >= 1
        return (hard.cumsum(1) - durations.cumsum(1)).abs()[phoneme_mask].float()

    before = boundary_errors()
    for _ in range(150):
        mel, mel_mask, ids, phoneme_mask, _ = synthetic_batch(generator, patterns, silent_id=silent_id)
        output = model(mel, mel_mask, ids, phoneme_mask)
        loss = model.forward_sum_loss(output.log_attention, mel_mask, output.aligned_token_mask)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = boundary_errors()
    assert after.mean() < 1.0 < before.mean()
    assert (after <= 1).float().mean() >= 0.85


def test_hard_durations_cover_every_frame_and_token_and_ignore_padding():
    torch.manual_seed(0)
    model = PhonemeAlignerModel(vocab_size=30).eval()
    mel = torch.randn(2, 80, 40)
    mel_mask = torch.ones(2, 40, dtype=torch.bool)
    mel_mask[1, 25:] = False
    ids = torch.randint(1, 30, (2, 9))
    phoneme_mask = torch.ones(2, 9, dtype=torch.bool)
    phoneme_mask[1, 6:] = False
    with torch.no_grad():
        log_attention = model(mel, mel_mask, ids, phoneme_mask).log_attention
        durations = model.hard_durations(log_attention, mel_mask, phoneme_mask)
        alone = model(mel[1:, :, :25], mel_mask[1:, :25], ids[1:, :6], phoneme_mask[1:, :6]).log_attention
    assert durations.sum(1).tolist() == [40, 25]
    assert durations[phoneme_mask].min() >= 1 and durations[~phoneme_mask].eq(0).all()
    # Padding changes nothing for the shorter clip, up to the rounding of |q|^2 + |k|^2 - 2 q.k.
    torch.testing.assert_close(log_attention[1, :25, :6], alone[0], rtol=1e-3, atol=2e-3)


def test_silent_tokens_get_no_frames_and_padding_still_changes_nothing():
    torch.manual_seed(0)
    model = PhonemeAlignerModel(vocab_size=30, silent_token_ids=[4, 5]).eval()
    mel = torch.randn(3, 80, 40)
    mel_mask = torch.ones(3, 40, dtype=torch.bool)
    mel_mask[1, 25:] = False
    ids = torch.tensor(
        [[5, 9, 4, 11, 12, 4, 13, 14, 15], [5, 9, 4, 11, 12, 4, 0, 0, 0], [5, 4, 5, 4, 0, 0, 0, 0, 0]]
    )
    phoneme_mask = ids != 0
    with torch.no_grad():
        output = model(mel, mel_mask, ids, phoneme_mask)
        durations = model.hard_durations(output.log_attention, mel_mask, output.aligned_token_mask)
        alone = model(mel[1:2, :, :25], mel_mask[1:2, :25], ids[1:2, :6], phoneme_mask[1:2, :6])
    assert output.log_attention.shape == (3, 40, 6)  # the longest run of aligned tokens
    assert durations.sum(1).tolist() == [40, 25, 40]
    heard = phoneme_mask & (ids != 4) & (ids != 5)
    assert durations[:2][heard[:2]].min() >= 1 and durations[:2][~heard[:2]].eq(0).all()
    # A clip of silent tokens only is aligned over all of them rather than left without frames.
    assert output.aligned_token_mask[2].tolist() == phoneme_mask[2].tolist() and durations[2, :4].min() >= 1
    torch.testing.assert_close(output.log_attention[1, :25, :3], alone.log_attention[0], rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize(
    "mel_durations, latent_frames, expected",
    [
        ([1, 3, 2, 5, 1], 6, [1, 1, 1, 3, 0]),  # boundaries 1,4,6,11,12 -> 1,2,3,6,6
        ([2, 2, 2], 3, [1, 1, 1]),
        ([1, 1, 1, 1, 3], 4, [1, 0, 1, 0, 2]),  # boundaries 1,2,3,4,7 -> 1,1,2,2,4
        ([7], 4, [4]),  # odd mel count: the last latent frame is half empty
    ],
)
def test_mel_durations_become_latent_durations_that_sum_exactly(mel_durations, latent_frames, expected):
    latent = mel_to_latent_durations(np.array(mel_durations), latent_frames, 2)
    assert latent.tolist() == expected and latent.sum() == latent_frames


def test_train_aligner_then_cache_durations(tmp_path):
    """The two commands of the README on a tiny corpus: train (a few steps), then add `durations` to the dataset;
    a clip with more tokens than frames is reported in bad_rows.jsonl, not kept."""
    from instructaudio_diffusers import AutoencoderKLMel, InstructAudioProcessor

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = []
    for index, (seconds, text) in enumerate(
        [(1.0, "Hello there."), (1.4, "Good morning, everyone."), (0.9, "你好,世界。"), (1.2, "")]
    ):
        sf.write(corpus / f"{index}.wav", tone(seconds, 200 + 60 * index), SAMPLING_RATE)
        task = "music" if not text else "speech"
        rows.append(
            row(
                f"{index}.wav",
                task=task,
                text=text,
                language="zh" if "你" in text else ("en" if text else ""),
            )
        )
    # A clip that cannot be aligned: 0.6 s (51 mel frames) for about 60 tokens.
    sf.write(corpus / "crowded.wav", tone(0.6, 300), SAMPLING_RATE)
    rows.append(row("crowded.wav", text="Hello there, " * 6))
    (corpus / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    output = tmp_path / "dataset"
    args = prepare_dataset.parse_args(
        [
            "--audio_dir",
            str(corpus),
            "--metadata",
            str(corpus / "metadata.jsonl"),
            "--output_dir",
            str(output),
        ]
    )
    assert prepare_dataset.main(args) == 0
    torch.manual_seed(0)
    AutoencoderKLMel(**TINY_VAE).save_pretrained(tmp_path / "vae")

    summary = train_aligner.main(
        train_aligner.parse_args(
            [
                "--dataset_dir", str(output), "--vae", str(tmp_path / "vae"), "--output_dir", str(tmp_path / "aligner"),
                "--max_train_steps", "4", "--validation_steps", "2", "--validation_fraction", "0.3",
            ]
        )
    )  # fmt: skip
    assert np.isfinite(summary["best_validation_loss"])
    aligner = PhonemeAlignerModel.from_pretrained(tmp_path / "aligner")
    assert aligner.config.time_downsample_factor == 2 and aligner.config.hop_length == 256
    log = [
        json.loads(line) for line in (tmp_path / "aligner" / "training_log.jsonl").read_text().splitlines()
    ]
    assert [entry["step"] for entry in log] == [2, 4]

    args = prepare_dataset.parse_args(
        ["--output_dir", str(output), "--precompute_durations", "--aligner", str(tmp_path / "aligner")]
    )
    assert prepare_dataset.main(args) == 0
    dataset = load_prepared_dataset(output)
    processor = InstructAudioProcessor()
    assert sorted(dataset["source_path"]) == ["0.wav", "1.wav", "2.wav", "3.wav"]
    for item in dataset:
        text = item["text"] if item["text"].strip() else "[inst]"
        mel_frames = round(item["duration_s"] * SAMPLING_RATE) // 256
        assert len(item["durations"]) == len(processor(text, padding=False, return_tensors=None)["input_ids"])
        assert sum(item["durations"]) == -(-mel_frames // 2)
        assert np.isfinite(item["alignment_cost"])
    bad = [json.loads(line) for line in (output / "bad_rows.jsonl").read_text().splitlines()]
    assert [(entry["path"], entry["reason"]) for entry in bad] == [("crowded.wav", "alignment_failed")]
    assert "more tokens than mel frames" in bad[0]["problems"][0][1]
    assert json.loads((output / "prepare_summary.json").read_text())["durations"]["rejected"] == 1


def test_train_aligner_refuses_a_folder_that_is_not_a_prepared_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_aligner.parse_args(
            ["--dataset_dir", str(tmp_path), "--vae", "v", "--output_dir", str(tmp_path / "o")]
        )
    assert "is not a prepared dataset (no state.json)" in capsys.readouterr().err
