"""training/train_instructaudio.py on tiny components: end to end, resume, overfitting, CFG dropout, DDP."""

import glob
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.testing_utils import TINY_MEL, get_dummy_components
from instructaudio_diffusers.training import preparation as prepare_dataset
from instructaudio_diffusers.training.checkpointing import list_checkpoints
from instructaudio_diffusers.training.data import load_prepared_dataset
from instructaudio_diffusers.training.transformer import objective as instructaudio_objective
from instructaudio_diffusers.training.transformer import train as train_instructaudio
from instructaudio_diffusers.training.transformer.data import (
    InstructAudioCollator,
    InstructAudioTrainingDataset,
    clip_latent_frames,
    encode_instructions,
    encode_latents,
)

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)
# (instruction, text, language, task) cycled over the clips; at 8 kHz / hop 16 / r = 2 one latent frame is 4 ms.
ROWS = [
    ("A calm woman speaks.", "Hello there.", "en", "speech"),
    ("An old man speaks slowly.", "Good morning to you.", "en", "speech"),
    ("A cheerful girl speaks.", "你好,世界。", "zh", "speech"),
    ("Two friends chat.", "[S0] Hi! [S1] Hello.", "en", "dialogue"),
    ("A soft piano melody.", "", "", "music"),
]
DURATIONS = [0.12, 0.2, 0.28, 0.36, 0.16, 0.24, 0.32, 0.4]


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    """A tiny saved pipeline (its text encoder folder also holds the tokenizer), a prepared dataset of tones,
    and a copy of it with cached latents and instruction embeddings."""
    root = tmp_path_factory.mktemp("instructaudio")
    components = get_dummy_components()
    InstructAudioPipeline(**components).save_pretrained(root / "pipeline")
    components["tokenizer"].save_pretrained(root / "pipeline" / "text_encoder")
    (root / "corpus" / "clips").mkdir(parents=True)
    rows = []
    for index, seconds in enumerate(DURATIONS):
        t = np.arange(int(seconds * TINY_MEL["sampling_rate"])) / TINY_MEL["sampling_rate"]
        audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * index) * t)
        sf.write(
            root / "corpus" / "clips" / f"clip{index}.wav",
            audio.astype(np.float32),
            TINY_MEL["sampling_rate"],
        )
        instruction, text, language, task = ROWS[index % len(ROWS)]
        path = f"clips/clip{index}.wav"
        rows.append(
            {"path": path, "instruction": instruction, "text": text, "language": language, "task": task}
        )
    metadata = root / "corpus" / "metadata.jsonl"
    metadata.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    prepare = ["--metadata", str(metadata), "--output_dir", str(root / "prepared"), "--min_duration", "0.1"]
    assert prepare_dataset.main(prepare_dataset.parse_args(prepare)) == 0
    shutil.copytree(root / "prepared", root / "cached")
    precompute = [
        "--output_dir",
        str(root / "cached"),
        "--precompute_latents",
        "--vae",
        str(root / "pipeline" / "vae"),
    ]
    precompute += ["--precompute_instructions", "--text_encoder", str(root / "pipeline" / "text_encoder")]
    assert prepare_dataset.main(prepare_dataset.parse_args(precompute)) == 0
    return root


def training_args(
    fixture_dir: Path,
    output_dir: Path,
    *extra: str,
    model: tuple[str, ...] | None = None,
    batching: tuple[str, ...] = ("--max_frames_per_batch", "200"),
) -> list[str]:
    """Options of a short, quiet run; `model` replaces fine-tuning the tiny pipeline, `batching` the budget."""
    model = model or ("--pretrained_model_name_or_path", str(fixture_dir / "pipeline"))
    quiet = "--learning_rate 1e-3 --lr_scheduler constant --lr_warmup_steps 0 --report_to none --seed 0"
    quiet += " --checkpointing_steps 1000 --validation_steps 0 --validation_instructions --validation_texts"
    paths = ["--dataset_dir", str(fixture_dir / "prepared"), "--output_dir", str(output_dir)]
    return [*paths, *model, *batching, *quiet.split(), *extra]


# One short validation prompt: 0.1 s in 2 Euler steps.
VALIDATION = ["--validation_instructions", "A calm woman speaks.", "--validation_texts", "Hello."]
VALIDATION += "--validation_audio_length_in_s 0.1 --num_validation_inference_steps 2".split()


def run(args: list[str]) -> "train_instructaudio.TrainingSummary":
    """`main(parse_args(args))` in this process as a fresh run (accelerate keeps process-wide singletons)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return train_instructaudio.main(train_instructaudio.parse_args(args))


def test_end_to_end_saves_a_pipeline_that_generates(fixture_dir, tmp_path):
    output = tmp_path / "run"
    options = "--max_train_steps 4 --use_ema --checkpointing_steps 2 --checkpoints_total_limit 1"
    options += " --validation_steps 2 --report_to tensorboard --hub_token hf_secret"
    summary = run(training_args(fixture_dir, output, *options.split(), *VALIDATION))
    assert summary.global_step == 4 and len(summary.losses) == 4 and all(np.isfinite(summary.losses))
    assert [step for step, _ in list_checkpoints(output)] == [4]
    checkpoint = output / "checkpoint-4"
    assert (checkpoint / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert (checkpoint / "transformer_ema" / "config.json").is_file()
    assert (output / "validation" / "step-2" / "sample0.wav").is_file()
    # The last step's validation is the final samples, generated once.
    assert not (output / "validation" / "step-4").exists()
    # The saved pipeline carries the EMA weights.
    ema = load_file(checkpoint / "transformer_ema" / "diffusion_pytorch_model.safetensors")
    final = load_file(output / "transformer" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(ema[name], final[name]) for name in final)

    card = (output / "README.md").read_text()
    assert "4 optimizer steps" in card and "8 clips" in card and "frame budget 200" in card
    assert "samples/sample0.wav" in card and (output / "samples" / "sample0.wav").is_file()
    # The card names inputs as given or by name, never by this machine's absolute paths.
    assert str(fixture_dir) not in card and str(tmp_path) not in card
    parsed = ModelCard.load(output / "README.md")
    assert parsed.data.pipeline_tag == "text-to-audio" and "instructaudio-training" in parsed.data.tags
    facts = json.loads((output / "training_summary.json").read_text())
    assert facts["num_processes"] == 1 and facts["global_step"] == 4
    assert "hf_secret" not in (output / "training_args.json").read_text()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(glob.glob(str(output / "logs" / "*" / "events.*"))[0])
    events.Reload()
    tags = "loss flow_matching_loss duration_loss lr grad_norm samples_per_second padding_fraction"
    for tag in tags.split():
        assert len(events.Scalars(f"train/{tag}")) == 4
    assert events.Tags()["audio"] == ["validation/sample0"]
    assert [event.step for event in events.Audio("validation/sample0")] == [2, 4]

    pipe = InstructAudioPipeline.from_pretrained(output)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    audio = pipe(
        "A calm woman speaks.", "Hello.", audio_length_in_s=0.1, num_inference_steps=2, generator=generator
    )
    audio = audio.audios[0]
    assert audio.shape == (800,) and np.isfinite(audio).all()


def test_new_model_from_components_with_cached_features_and_fixed_batches(fixture_dir, tmp_path):
    config = dict(get_dummy_components()["transformer"].config)
    (tmp_path / "transformer.json").write_text(json.dumps(config))
    pipeline = fixture_dir / "pipeline"
    output = tmp_path / "run"
    model = ("--transformer_config", str(tmp_path / "transformer.json"), "--vae", str(pipeline / "vae"))
    model += ("--vocoder", str(pipeline / "vocoder"), "--text_encoder", str(pipeline / "text_encoder"))
    cached = ("--dataset_dir", str(fixture_dir / "cached"), "--num_train_epochs", "1")
    summary = run(
        training_args(fixture_dir, output, *cached, model=model, batching=("--train_batch_size", "3"))
    )
    assert summary.global_step == 3  # ceil(8 clips / 3)
    pipe = InstructAudioPipeline.from_pretrained(output)
    assert pipe.transformer.config.hidden_size == config["hidden_size"]
    assert "a new transformer" in (output / "README.md").read_text()


def test_a_transformer_config_that_does_not_fit_the_components_is_rejected(fixture_dir, tmp_path):
    config = {**get_dummy_components()["transformer"].config, "phoneme_vocab_size": 10}
    (tmp_path / "transformer.json").write_text(json.dumps(config))
    pipeline = fixture_dir / "pipeline"
    model = ["--transformer_config", str(tmp_path / "transformer.json"), "--vae", str(pipeline / "vae")]
    args = train_instructaudio.parse_args(
        [
            "--dataset_dir",
            str(fixture_dir / "prepared"),
            "--output_dir",
            str(tmp_path),
            *model,
            "--text_encoder",
            str(pipeline / "text_encoder"),
        ]
    )
    with pytest.raises(ValueError, match="phoneme_vocab_size=10"):
        train_instructaudio.load_components(args)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


@pytest.mark.parametrize("accumulation, first, total", [(1, 3, 6), (2, 1, 3)])
def test_resume_reproduces_an_uninterrupted_run(fixture_dir, tmp_path, accumulation, first, total):
    """`total` steps straight vs `first` steps, then a resumed run to `total`: same weights, EMA and losses.

    The 8 clips make 4 frame-budget batches per epoch, so both resumes land mid-epoch and cross an epoch.
    """
    common = f"--use_ema --ema_decay 0.9 --checkpointing_steps {first}"
    common += f" --gradient_accumulation_steps {accumulation}"
    straight = run(
        training_args(fixture_dir, tmp_path / "straight", *f"{common} --max_train_steps {total}".split())
    )
    run(training_args(fixture_dir, tmp_path / "resumed", *f"{common} --max_train_steps {first}".split()))
    resume = f"{common} --max_train_steps {total} --resume_from_checkpoint latest"
    warnings = logging.Handler()
    warnings.emit = lambda record: unexpected.append(record.getMessage())
    unexpected: list[str] = []
    logging.getLogger("diffusers").addHandler(warnings)
    try:
        resumed = run(training_args(fixture_dir, tmp_path / "resumed", *resume.split()))
    finally:
        logging.getLogger("diffusers").removeHandler(warnings)
    # The EMA is restored from its files, without diffusers' warnings about the EMA's own config keys.
    assert not [message for message in unexpected if "not expected" in message], unexpected
    assert resumed.global_step == total and len(resumed.losses) == total - first
    np.testing.assert_allclose(resumed.losses, straight.losses[first:], rtol=1e-6)
    for subfolder in ("transformer", "transformer_ema"):
        expected = _weights(tmp_path / "straight" / f"checkpoint-{total}" / subfolder)
        actual = _weights(tmp_path / "resumed" / f"checkpoint-{total}" / subfolder)
        assert max((expected[name] - actual[name]).abs().max().item() for name in expected) < 1e-6
    # The check has teeth: training did move the weights.
    initial = _weights(fixture_dir / "pipeline" / "transformer")
    assert max((initial[name] - expected[name]).abs().max().item() for name in initial) > 1e-3


def _tiny_batch(fixture_dir: Path, dataset: str, indices: list[int]):
    pipe = InstructAudioPipeline.from_pretrained(fixture_dir / "pipeline")
    rows = load_prepared_dataset(fixture_dir / dataset)
    frames = clip_latent_frames(rows, dict(pipe.vae.config), pipe.vae.time_downsample_factor)
    items = InstructAudioTrainingDataset(
        rows, fixture_dir / dataset, pipe.processor, frames, TINY_MEL["sampling_rate"]
    )
    return pipe, InstructAudioCollator(pipe.tokenizer)([items[i] for i in indices])


def test_cached_and_on_the_fly_features_agree(fixture_dir):
    pipe, cached = _tiny_batch(fixture_dir, "cached", [0, 3, 5])
    _, live = _tiny_batch(fixture_dir, "prepared", [0, 3, 5])
    assert "posterior_mean" in cached and "waveforms" in live
    assert "instruction_embeds" in cached and "instruction_input_ids" in live
    cpu = torch.device("cpu")
    for sample in (False, True):
        generators = [torch.Generator().manual_seed(0) for _ in range(2)]
        cached_latents, cached_mask = encode_latents(cached, pipe.vae, None, generators[0], sample, cpu)
        live_latents, live_mask = encode_latents(
            live, pipe.vae, pipe.vae.mel_spectrogram(), generators[1], sample, cpu
        )
        assert torch.equal(cached_mask, live_mask)
        # Sampled latents too: both paths draw each clip's noise at its own length, in batch order.
        torch.testing.assert_close(cached_latents, live_latents, atol=1e-5, rtol=1e-5)
    cached_embeds, cached_mask = encode_instructions(cached, None, cpu)
    live_embeds, live_mask = encode_instructions(live, pipe.text_encoder, cpu)
    assert torch.equal(cached_mask, live_mask)
    torch.testing.assert_close(
        cached_embeds * cached_mask[..., None], live_embeds * live_mask[..., None], atol=1e-5, rtol=1e-5
    )


def _objective_args(*extra: str):
    return train_instructaudio.parse_args(
        ["--dataset_dir", ".", "--output_dir", "-", "--pretrained_model_name_or_path", ".", *extra]
    )


def test_loss_falls_when_overfitting_a_fixed_batch(fixture_dir):
    """Same batch, noise and sigmas every step: the objective and its gradients must drive the loss down."""
    from instructaudio_diffusers.training.batching import keyed_generator

    pipe, batch = _tiny_batch(fixture_dir, "cached", [0, 1, 2, 3])
    cpu = torch.device("cpu")
    latents, frame_mask = encode_latents(batch, pipe.vae, None, keyed_generator(0), True, cpu)
    embeds, mask = encode_instructions(batch, None, cpu)
    objective = instructaudio_objective.FlowMatchingObjectiveConfig.from_args(
        _objective_args("--instruction_dropout", "0", "--text_dropout", "0"), pipe.scheduler.config
    )
    model = pipe.transformer.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        phonemes = (batch["phoneme_ids"], batch["phoneme_attention_mask"])
        parts = instructaudio_objective.flow_matching_losses(
            model,
            latents,
            frame_mask,
            embeds,
            mask,
            *phonemes,
            batch["latent_frames"],
            objective,
            keyed_generator(1),
        )
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        losses.append((parts["flow_matching_loss"].item(), parts["duration_loss"].item()))
    flow, duration = np.array(losses).T
    assert flow[-1] < 0.3 * flow[0] and duration[-1] < 0.5 * duration[0]


def test_condition_dropout_is_the_pipelines_unconditional_branch(fixture_dir):
    pipe, batch = _tiny_batch(fixture_dir, "prepared", [0, 2])
    model = pipe.transformer.eval()
    embeds, mask = encode_instructions(batch, pipe.text_encoder, torch.device("cpu"))
    phoneme_ids, phoneme_mask = batch["phoneme_ids"], batch["phoneme_attention_mask"]
    everything = torch.ones(2, dtype=torch.bool)
    dropped = instructaudio_objective.apply_condition_dropout(
        embeds, mask, phoneme_mask, everything, everything
    )
    latents = torch.randn(2, 4, 20, generator=torch.Generator().manual_seed(0))
    timestep = torch.full((2,), 500.0)
    with torch.no_grad():
        training = model(latents, timestep, dropped[0], dropped[1], phoneme_ids, dropped[2]).sample
        # The pipeline's guidance branch: the same instruction embeddings with no negative instruction.
        unconditional = pipe._unconditional_text_condition(embeds, mask, None, 1, torch.device("cpu"))
        pipeline = model(latents, timestep, text_condition=unconditional).sample
    torch.testing.assert_close(training, pipeline, atol=1e-5, rtol=1e-5)

    generator = torch.Generator().manual_seed(0)
    drop_instruction, drop_text = instructaudio_objective.draw_condition_dropout(
        20000, 0.1, 0.2, "nested", generator
    )
    assert not (drop_instruction & ~drop_text).any()  # a dropped instruction always comes with a dropped text
    assert abs(drop_instruction.float().mean() - 0.1) < 0.01 and abs(drop_text.float().mean() - 0.2) < 0.01
    drop_instruction, drop_text = instructaudio_objective.draw_condition_dropout(
        20000, 0.1, 0.2, "independent", generator
    )
    assert abs((drop_instruction & drop_text).float().mean() - 0.02) < 0.005


@pytest.mark.parametrize("name", ["instructaudio_demo.yaml", "instructaudio_paper.yaml"])
def test_shipped_configs_parse_from_any_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(
        tmp_path
    )  # relative paths in the config are the repository's, not the current directory's
    inputs = [f"--{option}={tmp_path}" for option in ("dataset_dir", "vae", "vocoder")]  # trained outputs
    args = train_instructaudio.parse_args(["--config", str(REPO / "training" / "configs" / name), *inputs])
    assert args.transformer_config == str(
        REPO / "configs" / name.split("_")[1].split(".")[0] / "transformer" / "config.json"
    )
    assert os.path.isfile(args.transformer_config) and args.output_dir.startswith(str(REPO / "runs"))
    assert args.max_frames_per_batch or args.train_batch_size


def test_a_missing_input_from_a_config_names_the_option_and_the_base(tmp_path, capsys):
    config = tmp_path / "project" / "configs" / "run.json"
    config.parent.mkdir(parents=True)
    (tmp_path / "project" / "pyproject.toml").write_text("")
    config.write_text(
        json.dumps({"transformer_config": "configs/missing.json", "vae": "runs/vae", "text_encoder": "x"})
    )
    with pytest.raises(SystemExit):
        train_instructaudio.parse_args(["--config", str(config), "--dataset_dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert "--transformer_config" in error and str(tmp_path / "project" / "configs" / "missing.json") in error
    assert f"relative to {tmp_path / 'project'}" in error
    with pytest.raises(SystemExit):
        train_instructaudio.parse_args(["--config", str(tmp_path / "absent.yaml")])
    assert "--config" in capsys.readouterr().err


def test_a_raw_audio_folder_is_prepared_once_and_subsampled(fixture_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = []
    for index in range(4):  # prepare_dataset keeps clips of 0.5 s and more by default
        t = np.arange(int(0.6 * TINY_MEL["sampling_rate"])) / TINY_MEL["sampling_rate"]
        sf.write(
            corpus / f"clip{index}.wav",
            (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32),
            TINY_MEL["sampling_rate"],
        )
        rows.append(
            {
                "path": f"clip{index}.wav",
                "instruction": "A man speaks.",
                "text": "Hello.",
                "language": "en",
                "task": "speech",
            }
        )
    (corpus / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "run"
    options = [
        arg
        for arg in training_args(fixture_dir, output, "--max_train_steps", "1")
        if arg != str(fixture_dir / "prepared")
    ]
    options.remove("--dataset_dir")
    run([*options, "--train_data_dir", str(corpus), "--max_train_samples", "3"])
    prepared = list((output / "prepared_data").iterdir())
    assert len(prepared) == 1 and (prepared[0] / "state.json").is_file()
    assert json.loads((output / "training_summary.json").read_text())["clips"] == 3
    run(
        [
            *options,
            "--train_data_dir",
            str(corpus),
            "--max_train_steps",
            "2",
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    assert list((output / "prepared_data").iterdir()) == prepared  # reused, not prepared again


def test_training_data_options(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _objective_args("--train_data_dir", str(tmp_path))  # with the --dataset_dir the helper gives
    assert "one of --dataset_dir" in capsys.readouterr().err
    args = train_instructaudio.parse_args(
        [
            "--train_data_dir",
            str(tmp_path),
            "--pretrained_model_name_or_path",
            str(tmp_path),
            "--max_train_samples",
            "3",
        ]
    )
    assert (
        args.output_dir == "runs/instructaudio" and args.dataset_dir is None and args.max_train_samples == 3
    )
    # A data option on the command line replaces the config's (the demo config names a --dataset_dir).
    demo = str(REPO / "training" / "configs" / "instructaudio_demo.yaml")
    args = train_instructaudio.parse_args(
        [
            "--config",
            demo,
            "--train_data_dir",
            str(tmp_path),
            "--vae",
            str(tmp_path),
            "--vocoder",
            str(tmp_path),
        ]
    )
    assert args.dataset_dir is None and args.train_data_dir == str(tmp_path)


def test_push_to_hub_fails_early_when_offline(monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit):
        _objective_args("--push_to_hub")
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


def test_push_to_hub_uploads_the_output_folder_without_checkpoints(monkeypatch, tmp_path):
    """The upload code path with the Hub calls replaced (no network here)."""
    import types

    import huggingface_hub

    from instructaudio_diffusers.training.transformer import outputs as instructaudio_outputs

    calls = {}

    def create_repo(repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)
        return types.SimpleNamespace(repo_id=f"user/{repo_id}")

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda **kwargs: calls.setdefault("upload", kwargs))
    args = _objective_args("--output_dir", str(tmp_path / "my-run"), "--hub_private")
    assert instructaudio_outputs.push_to_hub(args) == "user/my-run"
    assert calls["create"] == ("my-run", {"exist_ok": True, "private": True, "token": None})
    assert calls["upload"]["repo_id"] == "user/my-run" and calls["upload"]["folder_path"] == args.output_dir
    assert "checkpoint-*" in calls["upload"]["ignore_patterns"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_training_with_torchrun(fixture_dir, tmp_path):
    """DDP over gloo: both ranks train, checkpoint (each its RNG state) and the saved pipeline loads."""
    output = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_port", str(_free_port())]
    options = "--cpu --max_train_steps 3 --checkpointing_steps 2 --use_ema --validation_steps 2".split()
    script = str(REPO / "training" / "train_instructaudio.py")
    probe = [str(REPO / "tests" / "ddp_probe.py"), script]
    command = [*torchrun, *probe, *training_args(fixture_dir, output, *options, *VALIDATION)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["DDP_PROBE_DIR"] = str(tmp_path)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    # No DDP wrapper outlives the process group (else gloo can deadlock at exit).
    assert [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)] == [0, 0]
    facts = json.loads((output / "training_summary.json").read_text())
    assert facts["num_processes"] == 2 and facts["distributed_type"].endswith("MULTI_CPU")
    assert facts["global_step"] == 3
    checkpoint = output / "checkpoint-2"
    assert (checkpoint / "random_states_0.pkl").is_file() and (checkpoint / "random_states_1.pkl").is_file()
    assert (checkpoint / "transformer_ema" / "config.json").is_file()
    # Validation ran on the main process only, mid-run and at the end.
    assert (output / "validation" / "step-2" / "sample0.wav").is_file()
    assert (output / "samples" / "sample0.wav").is_file()
    pipe = InstructAudioPipeline.from_pretrained(output)
    pipe.set_progress_bar_config(disable=True)
    audio = pipe("A calm woman speaks.", "Hello.", audio_length_in_s=0.1, num_inference_steps=2).audios[0]
    assert np.isfinite(audio).all()


def test_whole_recipe_prepare_vae_main_model_generate(fixture_dir, tmp_path):
    """The README's recipe at toy size: the prepared dataset -> a freshly trained Mel-VAE -> a new
    transformer trained on that VAE's latents -> `from_pretrained` -> audio."""
    from accelerate.state import AcceleratorState, GradientState

    from instructaudio_diffusers import AutoencoderKLMel
    from instructaudio_diffusers.training.mel_vae import train as train_mel_vae

    vae_config = tmp_path / "vae.json"
    vae_config.write_text(json.dumps(dict(get_dummy_components()["vae"].config)))
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    vae_args = ["--dataset_dir", str(fixture_dir / "prepared"), "--vae_config", str(vae_config)]
    vae_args += ["--output_dir", str(tmp_path / "vae"), "--segment_seconds", "0.1", "--train_batch_size", "2"]
    vae_args += "--max_train_steps 3 --report_to none --validation_steps 0 --seed 0".split()
    train_mel_vae.main(train_mel_vae.parse_args(vae_args))
    trained_vae = AutoencoderKLMel.from_pretrained(tmp_path / "vae")
    assert trained_vae.config.latents_std is not None

    config = dict(get_dummy_components()["transformer"].config)
    (tmp_path / "transformer.json").write_text(json.dumps(config))
    pipeline = fixture_dir / "pipeline"
    model = ("--transformer_config", str(tmp_path / "transformer.json"), "--vae", str(tmp_path / "vae"))
    model += ("--vocoder", str(pipeline / "vocoder"), "--text_encoder", str(pipeline / "text_encoder"))
    output = tmp_path / "run"
    summary = run(training_args(fixture_dir, output, "--max_train_steps", "3", model=model))
    assert summary.global_step == 3 and all(np.isfinite(summary.losses))

    pipe = InstructAudioPipeline.from_pretrained(output)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.vae.config.latents_std == trained_vae.config.latents_std
    audio = pipe("A calm woman speaks.", "Hello.", audio_length_in_s=0.1, num_inference_steps=2).audios[0]
    assert audio.shape == (800,) and np.isfinite(audio).all()
