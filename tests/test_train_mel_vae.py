"""training/train_mel_vae.py end to end on a tiny VAE: saving, overfitting, exact resume, checkpoints."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from instructaudio_diffusers.training import preparation as prepare_dataset
from instructaudio_diffusers.training.checkpointing import list_checkpoints, resolve_checkpoint
from instructaudio_diffusers.training.mel_vae import train as train_mel_vae

REPO = Path(__file__).resolve().parents[1]

SAMPLING_RATE = 22050
# 22 latent frames of 512 samples: the crop length --segment_seconds 0.5 rounds to.
SEGMENT_SAMPLES = 22 * 512
TINY_VAE = {
    "_class_name": "AutoencoderKLMel",
    "n_mels": 80,
    "latent_channels": 8,
    "block_out_channels": [16, 32],
    "downsample_factors": [2],
    "layers_per_block": 1,
}


def make_dataset(folder: Path, durations: list[float]) -> Path:
    """Instrumental 'music' rows (no text, so no phonemizer needed): warbling tones of the given lengths."""
    (folder / "audio").mkdir(parents=True)
    rows = []
    for index, seconds in enumerate(durations):
        t = np.arange(int(round(seconds * SAMPLING_RATE))) / SAMPLING_RATE
        audio = 0.3 * np.sin(2 * np.pi * (200 + 90 * index) * t + 2 * np.sin(2 * np.pi * 3 * t))
        sf.write(folder / "audio" / f"clip{index}.wav", audio.astype(np.float32), SAMPLING_RATE)
        rows.append(
            {
                "path": f"audio/clip{index}.wav",
                "instruction": "A warbling tone.",
                "text": "",
                "language": "",
                "task": "music",
            }
        )
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = folder / "prepared"
    args = prepare_dataset.parse_args(
        ["--metadata", str(folder / "metadata.jsonl"), "--output_dir", str(output), "--min_duration", "0.3"]
    )
    assert prepare_dataset.main(args) == 0
    return output


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """Five clips, one shorter than the 0.51 s crop (exercising the padding mask)."""
    return make_dataset(tmp_path_factory.mktemp("vae_data"), [0.6, 0.8, 1.0, 1.2, 0.4])


@pytest.fixture(scope="module")
def vae_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vae_config") / "config.json"
    path.write_text(json.dumps(TINY_VAE))
    return path


def run(
    dataset_dir: Path, vae_config: Path, output_dir: Path, *extra: str
) -> "train_mel_vae.TrainingSummary":
    """`main(parse_args([...]))` in this process, as a fresh run (accelerate keeps process-wide singletons)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    args = [
        "--dataset_dir",
        str(dataset_dir),
        "--vae_config",
        str(vae_config),
        "--output_dir",
        str(output_dir),
        "--segment_seconds",
        "0.5",
        "--train_batch_size",
        "2",
        "--learning_rate",
        "1e-3",
        "--lr_warmup_steps",
        "2",
        "--report_to",
        "none",
        "--validation_steps",
        "0",
        "--checkpointing_steps",
        "1000",
        "--seed",
        "0",
        "--num_validation_clips",
        "1",
        "--validation_max_seconds",
        "0.5",
        *extra,
    ]
    return train_mel_vae.main(train_mel_vae.parse_args(args))


def test_end_to_end_saves_a_vae_with_latent_statistics(dataset_dir, vae_config, tmp_path):
    from instructaudio_diffusers import AutoencoderKLMel, load_audio

    output = tmp_path / "run"
    summary = run(
        dataset_dir,
        vae_config,
        output,
        "--max_train_steps",
        "4",
        "--validation_steps",
        "4",
        "--report_to",
        "tensorboard",
        "--multiscale_pooling",
        "2",
        "4",
        "--adversarial_start_step",
        "2",
        "--use_ema",
    )
    assert summary.global_step == 4 and len(summary.losses) == 4 and all(np.isfinite(summary.losses))

    vae = AutoencoderKLMel.from_pretrained(output).eval()
    assert (output / "diffusion_pytorch_model.safetensors").is_file()
    assert len(vae.config.latents_mean) == len(vae.config.latents_std) == 8
    assert min(vae.config.latents_std) > 0 and vae.config.scaling_factor == 1.0
    # The statistics are those of the saved weights: over the whole dataset the normalised latents are
    # zero-mean and unit-variance per channel.
    latents = []
    for path in sorted((dataset_dir.parent / "audio").glob("*.wav")):
        audio, _ = load_audio(path, SAMPLING_RATE)
        with torch.no_grad():
            latents.append(vae.encode(vae.mel_spectrogram()(torch.from_numpy(audio))).latent_dist.mode())
    normalized = vae.normalize_latents(torch.cat(latents, dim=-1))[0].double()
    torch.testing.assert_close(
        normalized.mean(dim=-1), torch.zeros(8, dtype=torch.float64), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        normalized.std(dim=-1, unbiased=False), torch.ones(8, dtype=torch.float64), atol=1e-3, rtol=0
    )

    assert list(output.glob("logs/**/events.out.tfevents.*"))
    validation = output / "validation" / "step-4"
    assert {p.name for p in validation.iterdir()} == {
        f"clip0_{name}.{ext}" for name in ("original", "reconstruction") for ext in ("png", "wav")
    }
    assert sf.info(validation / "clip0_reconstruction.wav").samplerate == SAMPLING_RATE
    card = ModelCard.load(output / "README.md")
    assert card.data.library_name == "diffusers" and 'AutoencoderKLMel.from_pretrained("run")' in card.text
    assert str(tmp_path) not in card.text and str(dataset_dir) not in card.text


def test_push_to_hub_uploads_the_vae_without_checkpoints(dataset_dir, vae_config, tmp_path, monkeypatch):
    """The Mel-VAE script has --push_to_hub too; the Hub calls are replaced (no network here)."""
    import types

    import huggingface_hub
    from huggingface_hub import constants

    calls = {}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        huggingface_hub,
        "create_repo",
        lambda repo_id, **kwargs: types.SimpleNamespace(repo_id=f"user/{repo_id}"),
    )
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kwargs: calls.setdefault("upload", kwargs))
    run(
        dataset_dir,
        vae_config,
        tmp_path / "vae-run",
        "--max_train_steps",
        "1",
        "--push_to_hub",
        "--hub_model_id",
        "my-vae",
    )
    assert (
        calls["upload"]["repo_id"] == "user/my-vae" and "checkpoint-*" in calls["upload"]["ignore_patterns"]
    )
    assert calls["upload"]["folder_path"] == str(tmp_path / "vae-run")


def test_loss_decreases_when_overfitting_one_clip(tmp_path, vae_config):
    # One clip exactly one crop long: every step sees the same batch.
    dataset_dir = make_dataset(tmp_path / "data", [SEGMENT_SAMPLES / SAMPLING_RATE])
    summary = run(
        dataset_dir,
        vae_config,
        tmp_path / "run",
        "--max_train_steps",
        "30",
        "--train_batch_size",
        "1",
        "--learning_rate",
        "3e-3",
        "--latent_stats_max_clips",
        "1",
    )
    losses = summary.losses
    assert len(losses) == 30
    # The decoder bias starts at the data's mean log-mel, so the first loss is already ~0.9, not ~10;
    # what is left to fit first is the posterior noise, which the model learns to shrink.
    assert losses[0] < 2.0 and np.mean(losses[-5:]) < 0.8 * losses[0], losses


def test_resume_reproduces_an_uninterrupted_run(dataset_dir, vae_config, tmp_path):
    # 5 clips, batch 2 -> 3 batches per epoch; accumulation 2 -> steps end at batches 2 and 3 (the
    # epoch's end), so the checkpoint at step 3 lies inside epoch 1 and resuming must skip a batch.
    common = [
        "--gradient_accumulation_steps",
        "2",
        "--checkpointing_steps",
        "3",
        "--use_ema",
        "--adversarial_start_step",
        "2",
        "--multiscale_pooling",
        "2",
        "--latent_stats_max_clips",
        "2",
    ]
    run(dataset_dir, vae_config, tmp_path / "straight", "--max_train_steps", "6", *common)
    run(dataset_dir, vae_config, tmp_path / "resumed", "--max_train_steps", "3", *common)
    summary = run(
        dataset_dir,
        vae_config,
        tmp_path / "resumed",
        "--max_train_steps",
        "6",
        "--resume_from_checkpoint",
        "latest",
        *common,
    )
    assert summary.global_step == 6 and len(summary.losses) == 3

    for name in (
        "diffusion_pytorch_model.safetensors",
        "checkpoint-6/model.safetensors",
        "checkpoint-6/model_1.safetensors",
    ):
        straight, resumed = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert straight.keys() == resumed.keys()
        for key in straight:
            torch.testing.assert_close(resumed[key], straight[key], atol=1e-6, rtol=0, msg=f"{name}:{key}")


def test_checkpoints_total_limit_keeps_the_newest(dataset_dir, vae_config, tmp_path):
    output = tmp_path / "run"
    run(
        dataset_dir,
        vae_config,
        output,
        "--max_train_steps",
        "4",
        "--checkpointing_steps",
        "1",
        "--checkpoints_total_limit",
        "2",
        "--latent_stats_max_clips",
        "1",
    )
    assert [step for step, _ in list_checkpoints(output)] == [3, 4]
    assert resolve_checkpoint(output, "latest") == output / "checkpoint-4"
    assert resolve_checkpoint(output, "checkpoint-3") == output / "checkpoint-3"
    assert resolve_checkpoint(output, None) is None
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(output, "checkpoint-1")


def test_crash_while_saving_keeps_the_previous_checkpoint_latest(
    dataset_dir, vae_config, tmp_path, monkeypatch
):
    from accelerate import Accelerator

    real_save_state = Accelerator.save_state

    def save_state_then_die(self, output_dir=None, **kwargs):
        if "checkpoint-4" in str(output_dir):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half a file")
            raise KeyboardInterrupt("killed while saving")
        return real_save_state(self, output_dir, **kwargs)

    output = tmp_path / "run"
    monkeypatch.setattr(Accelerator, "save_state", save_state_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(dataset_dir, vae_config, output, "--max_train_steps", "6", "--checkpointing_steps", "2")
    monkeypatch.undo()
    assert [step for step, _ in list_checkpoints(output)] == [2]
    assert resolve_checkpoint(output, "latest") == output / "checkpoint-2"
    assert not (output / "config.json").exists()

    summary = run(
        dataset_dir,
        vae_config,
        output,
        "--max_train_steps",
        "6",
        "--checkpointing_steps",
        "2",
        "--resume_from_checkpoint",
        "latest",
        "--latent_stats_max_clips",
        "1",
    )
    assert summary.global_step == 6 and len(summary.losses) == 4
    assert [step for step, _ in list_checkpoints(output)] == [2, 4, 6]
    assert not list(output.glob("*.partial")) and (output / "config.json").is_file()


def test_config_file_supplies_defaults(dataset_dir, vae_config, tmp_path):
    config = tmp_path / "options.json"
    config.write_text(
        json.dumps(
            {
                "dataset_dir": str(dataset_dir),
                "output_dir": str(tmp_path / "run"),
                "kl_weight": 1e-4,
                "_comment": "ignored",
            }
        )
    )
    args = train_mel_vae.parse_args(["--config", str(config), "--kl_weight", "1e-5"])
    assert args.dataset_dir == str(dataset_dir) and args.kl_weight == 1e-5  # the command line wins
    config.write_text(json.dumps({"dataset_dir": str(dataset_dir), "learning_rat": 1.0}))
    with pytest.raises(SystemExit):
        train_mel_vae.parse_args(["--config", str(config), "--output_dir", str(tmp_path)])
    # The shipped config's relative paths are the repository's, whatever the current directory.
    demo_config = str(REPO / "training/configs/mel_vae_demo.json")
    demo = train_mel_vae.parse_args(["--config", demo_config, "--dataset_dir", str(dataset_dir)])
    assert demo.vae_config == str(REPO / "configs/demo/vae/config.json") and os.path.isfile(demo.vae_config)
    assert demo.output_dir == str(REPO / "runs/demo/mel_vae")


@pytest.mark.slow
def test_two_process_ddp_on_cpu(dataset_dir, vae_config, tmp_path):
    """`torchrun` with two gloo processes: the data is sharded, both ranks checkpoint, the model is saved."""
    import os
    import socket
    import subprocess

    with socket.socket() as probe:  # a free port, so parallel test runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        str(REPO / "tests/ddp_probe.py"),
        str(REPO / "training/train_mel_vae.py"),
        "--cpu",
        "--dataset_dir",
        str(dataset_dir),
        "--vae_config",
        str(vae_config),
        "--output_dir",
        str(output),
        "--segment_seconds",
        "0.5",
        "--train_batch_size",
        "1",
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "2",
        "--use_ema",
        "--adversarial_start_step",
        "1",
        "--report_to",
        "none",
        "--validation_steps",
        "0",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DDP_PROBE_DIR": str(tmp_path)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # No DDP wrapper outlives the process group (else gloo can deadlock at exit).
    assert [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)] == [0, 0]
    assert "batches/epoch/process=3" in result.stderr  # 5 clips split over 2 ranks, not 5 on each
    checkpoint = output / "checkpoint-2"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    assert (output / "diffusion_pytorch_model.safetensors").is_file()
