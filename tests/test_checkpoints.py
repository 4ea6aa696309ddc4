"""training/checkpoints.py: checkpoints resume exactly, never run code, and refuse damage by name."""

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instructaudio_diffusers.training.batching import TrainingProgress
from instructaudio_diffusers.training.checkpointing import (
    CheckpointError,
    CheckpointState,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]

TINY_VAE = dict(
    n_mels=16, latent_channels=2, block_out_channels=(4, 4), downsample_factors=(2,), layers_per_block=1
)


class Run:
    """A minimal training run as the scripts set it up: a prepared model, optimizer and scheduler, an EMA."""

    def __init__(self, output_dir: Path, use_ema: bool = True, seed: int = 0):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState
        from accelerate.utils import ProjectConfiguration
        from diffusers.training_utils import EMAModel

        from instructaudio_diffusers import AutoencoderKLMel

        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        self.accelerator = Accelerator(
            cpu=True, project_config=ProjectConfiguration(project_dir=str(output_dir))
        )
        torch.manual_seed(seed)
        model = AutoencoderKLMel(**TINY_VAE)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.ema = EMAModel(
            model.parameters(), decay=0.9, model_cls=AutoencoderKLMel, model_config=model.config
        )
        self.ema = self.ema if use_ema else None
        self.progress = TrainingProgress()
        names = [name for name, _ in model.named_parameters()]
        self.state = CheckpointState(self.progress, self.ema, "vae_ema", names if use_ema else None)
        self.output_dir = output_dir

    def train_step(self):
        # Keyed by the step, as the scripts key their noise: saving a checkpoint draws from the global RNG.
        generator = torch.Generator().manual_seed(self.progress.global_step)
        mel = torch.randn(2, TINY_VAE["n_mels"], 8, generator=generator)
        loss = (self.model(mel).sample - mel).square().mean()
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.step(self.model.parameters())
        self.progress.global_step += 1
        self.progress.batches_in_epoch += 1

    def save(self):
        return save_checkpoint(self.accelerator, self.output_dir, self.progress.global_step, None, self.state)

    def resume(self, which):
        """What the scripts do: find (and check) the checkpoint first, load it later."""
        checkpoint = find_checkpoint(self.output_dir, which)
        if checkpoint is not None:
            load_checkpoint(self.accelerator, checkpoint, self.state)
        return checkpoint


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder with checkpoint-1 and checkpoint-2, written by a run with an EMA."""
    run = Run(tmp_path / "run")
    for _ in range(2):
        run.train_step()
        run.save()
    return tmp_path / "run"


def assert_same_state(a: Run, b: Run):
    assert a.progress == b.progress
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)
    assert json.dumps(a.optimizer.state_dict()["param_groups"]) == json.dumps(
        b.optimizer.state_dict()["param_groups"]
    )
    for x, y in zip(a.optimizer.state_dict()["state"].values(), b.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(x[key], y[key]) for key in x)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    if a.ema is not None:
        assert a.ema.optimization_step == b.ema.optimization_step and a.ema.decay == b.ema.decay
        assert all(torch.equal(x, y) for x, y in zip(a.ema.shadow_params, b.ema.shadow_params))


def test_a_checkpoint_holds_no_pickle_of_ours_and_resumes_exactly(run_dir):
    checkpoint = run_dir / "checkpoint-2"
    assert json.loads((checkpoint / "training_state.json").read_text()) == {
        "global_step": 2,
        "epoch": 0,
        "batches_in_epoch": 2,
    }
    assert (checkpoint / "vae_ema" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    # The only pickles are accelerate's: optimizer, scheduler, random states.
    assert sorted(p.name for p in checkpoint.rglob("*") if p.suffix in (".bin", ".pkl")) == [
        "optimizer.bin",
        "random_states_0.pkl",
        "scheduler.bin",
    ]
    original = Run(run_dir, seed=0)
    for _ in range(2):
        original.train_step()
    resumed = Run(run_dir, seed=1)  # other initial weights: all of them must come from the checkpoint
    assert resumed.resume("latest") == checkpoint
    assert_same_state(original, resumed)
    # And both go on identically.
    original.train_step()
    resumed.train_step()
    assert_same_state(original, resumed)


class RunsCode:
    """A pickle that runs code when loaded: `__reduce__` makes the unpickler call `exec` on a string."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def plant(path: Path, marker: Path, flavour: str) -> None:
    payload = {"state": RunsCode(marker), "step": 2}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    if flavour == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(payload, handle)


# Every kind of file a checkpoint holds, and those accelerate or diffusers would read if present: a pickle
# in place of a safetensors or JSON file is damage (never unpickled); elsewhere it is refused as unsafe.
PLANTED = [
    ("optimizer.bin", "unsafe"),
    ("scheduler.bin", "unsafe"),
    ("random_states_0.pkl", "unsafe"),
    ("custom_checkpoint_0.pkl", "unsafe"),  # where older checkpoints kept the loop position
    ("pytorch_model.bin", "unsafe"),  # accelerate's model file without safetensors
    ("sampler.bin", "unsafe"),
    ("scaler.pt", "unsafe"),
    ("vae_ema/diffusion_pytorch_model.bin", "unsafe"),
    ("model.safetensors", "damaged"),
    ("training_state.json", "damaged"),
    ("vae_ema/config.json", "damaged"),
    ("vae_ema/diffusion_pytorch_model.safetensors", "damaged"),
]


@pytest.mark.parametrize("flavour", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("name, kind", PLANTED)
def test_a_pickle_that_runs_code_is_refused_by_name_and_nothing_runs(run_dir, tmp_path, name, kind, flavour):
    marker = tmp_path / "code-ran"
    plant(run_dir / "checkpoint-2" / name, marker, flavour)
    run = Run(run_dir)
    with pytest.raises(CheckpointError) as caught:
        run.resume("checkpoint-2")
    assert f"checkpoint-2/{name}" in str(caught.value) and caught.value.kind == kind
    if kind == "unsafe":
        assert "Refusing to resume" in str(caught.value) and "run any code" in str(caught.value)
        with pytest.raises(CheckpointError, match="Refusing"):  # no quiet fallback from a tampered folder
            Run(run_dir).resume("latest")
    assert not marker.exists(), "the planted pickle ran"
    assert run.progress.global_step == 0  # nothing was loaded either


def test_a_truncated_optimizer_state_names_the_checkpoint_and_the_one_before(run_dir, caplog):
    optimizer = run_dir / "checkpoint-2" / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    with pytest.raises(CheckpointError) as caught:
        Run(run_dir).resume(str(run_dir / "checkpoint-2"))
    message = str(caught.value)
    assert f"{run_dir / 'checkpoint-2'} is damaged: checkpoint-2/optimizer.bin cannot be read" in message
    assert f"The newest earlier checkpoint that reads whole is {run_dir / 'checkpoint-1'}" in message
    assert "--resume_from_checkpoint" in message

    run = Run(run_dir)
    with caplog.at_level(logging.WARNING, logger="checkpoints"):
        assert run.resume("latest") == run_dir / "checkpoint-1"
    assert run.progress.global_step == 1
    assert any(
        "Resuming from" in r.getMessage() and "checkpoint-1 instead" in r.getMessage() for r in caplog.records
    )


def test_with_no_earlier_checkpoint_a_damaged_one_says_so(run_dir):
    shutil.rmtree(run_dir / "checkpoint-1")
    (run_dir / "checkpoint-2" / "scheduler.bin").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="No earlier checkpoint in its folder reads whole either"):
        Run(run_dir).resume("latest")


def test_ema_mismatch_between_checkpoint_and_run_is_refused(run_dir, tmp_path):
    with pytest.raises(CheckpointError, match="holds EMA weights but this run has no --use_ema"):
        Run(run_dir, use_ema=False).resume("latest")
    plain = Run(tmp_path / "plain", use_ema=False)
    plain.train_step()
    plain.save()
    with pytest.raises(CheckpointError, match="saved without --use_ema"):
        Run(tmp_path / "plain").resume("latest")


def legacy_checkpoint(run: Run, step: int) -> Path:
    """A checkpoint as the scripts wrote them before: EMA and loop position registered with accelerate."""
    run.accelerator.register_for_checkpointing(run.ema)
    run.accelerator.register_for_checkpointing(run.progress)
    folder = run.output_dir / f"checkpoint-{step}"
    run.accelerator.save_state(str(folder))
    return folder


def test_older_checkpoints_with_accelerate_pickles_still_resume(tmp_path):
    original = Run(tmp_path / "old")
    for _ in range(3):
        original.train_step()
    folder = legacy_checkpoint(original, 3)
    assert sorted(p.name for p in folder.glob("custom_checkpoint_*.pkl")) == [
        "custom_checkpoint_0.pkl",
        "custom_checkpoint_1.pkl",
    ]
    resumed = Run(tmp_path / "old", seed=1)
    assert resumed.resume("latest") == folder
    assert_same_state(original, resumed)
    assert sorted(entry.name for entry in (tmp_path / "old").iterdir()) == ["checkpoint-3"]  # no view left


@pytest.mark.parametrize("index", [0, 1])
def test_a_pickle_that_runs_code_in_an_older_checkpoint_is_refused(tmp_path, index):
    original = Run(tmp_path / "old")
    original.train_step()
    folder = legacy_checkpoint(original, 1)
    marker = tmp_path / "code-ran"
    plant(folder / f"custom_checkpoint_{index}.pkl", marker, "torch.save")
    with pytest.raises(CheckpointError, match=f"checkpoint-1/custom_checkpoint_{index}.pkl"):
        Run(tmp_path / "old").resume("latest")
    assert not marker.exists()


@pytest.mark.parametrize("script", ["train_mel_vae.py", "train_instructaudio.py"])
def test_the_training_scripts_refuse_before_loading_anything_and_print_one_line(tmp_path, script):
    run = Run(tmp_path / "run")
    run.train_step()
    run.save()
    marker = tmp_path / "code-ran"
    plant(tmp_path / "run" / "checkpoint-1" / "random_states_0.pkl", marker, "torch.save")
    (tmp_path / "run" / "training_args.json").write_text("the user's")
    # Inputs that exist (the scripts refuse missing ones at parse time) but are never read: the checkpoint is
    # refused before any of them loads.
    unused_folder, unused_file = tmp_path / "not-needed-yet", tmp_path / "unused.json"
    unused_folder.mkdir()
    unused_file.write_text("{}")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "training" / script),
            "--dataset_dir",
            str(unused_folder),
            *(
                ["--vae_config", str(unused_file)]
                if script == "train_mel_vae.py"
                else [
                    "--vae",
                    str(unused_folder),
                    "--text_encoder",
                    str(unused_folder),
                    "--transformer_config",
                    str(unused_file),
                ]
            ),
            "--output_dir",
            str(tmp_path / "run"),
            "--resume_from_checkpoint",
            "latest",
            "--report_to",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1, result.stderr
    assert f"{script}: error: Refusing to resume from" in result.stderr
    assert "checkpoint-1/random_states_0.pkl" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()
    assert (tmp_path / "run" / "training_args.json").read_text() == "the user's"  # nothing was written
