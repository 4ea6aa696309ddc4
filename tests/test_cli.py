"""`instructaudio generate` end to end on a saved tiny pipeline, and its checks before any model loads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.cli import main
from instructaudio_diffusers.testing_utils import get_dummy_components

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-pipeline")
    InstructAudioPipeline(**get_dummy_components()).save_pretrained(path)
    return path


def generate_args(model_dir, output, *extra):
    return [
        "generate",
        "--model",
        str(model_dir),
        "--instruction",
        "A calm man speaks.",
        "--text",
        "Hello.",
        "--output",
        str(output),
        "--steps",
        "1",
        *extra,
    ]


def test_generate_writes_the_requested_length(model_dir, tmp_path, capsys):
    output = tmp_path / "out.wav"
    rc = main(generate_args(model_dir, output, "--seconds", "0.2", "--steps", "2", "--seed", "3"))
    assert rc == 0
    audio, sampling_rate = sf.read(output)
    assert sampling_rate == 8000 and len(audio) == 1600
    assert "real-time factor" in capsys.readouterr().out


def test_device_dtype_and_threads_reach_the_run(model_dir, tmp_path, monkeypatch):
    seen = {}
    original_call = InstructAudioPipeline.__call__

    def spy(pipe, *args, **kwargs):
        seen["dtypes"] = {
            name: c.dtype for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)
        }
        seen["device"] = pipe.device
        seen["threads"] = torch.get_num_threads()
        return original_call(pipe, *args, **kwargs)

    monkeypatch.setattr(InstructAudioPipeline, "__call__", spy)
    threads = torch.get_num_threads()
    try:
        extra = ["--seconds", "0.1", "--device", "cpu", "--dtype", "bfloat16", "--threads", "1"]
        assert main(generate_args(model_dir, tmp_path / "bf16.wav", *extra)) == 0
    finally:
        torch.set_num_threads(threads)
    assert set(seen["dtypes"]) == {"text_encoder", "transformer", "vae", "vocoder"}
    assert set(seen["dtypes"].values()) == {torch.bfloat16}
    assert seen["device"] == torch.device("cpu") and seen["threads"] == 1
    audio, _ = sf.read(tmp_path / "bf16.wav")
    assert len(audio) == 800 and abs(audio).max() > 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "[S9] hi"], "S9"),
        (["--text", "[S9] hi", "--stream"], "S9"),
        (["--seconds", "100"], "--seconds must be from 0.004 to 2.05 for this model"),
        (["--seconds", "0.001"], "--seconds must be from 0.004"),
        (["--device", "no-such-device"], "--device no-such-device cannot be used here"),
    ],
)
def test_bad_input_after_loading_gives_a_clear_error(model_dir, tmp_path, capsys, extra, message):
    output = tmp_path / "out.wav"
    assert main(generate_args(model_dir, output, *extra)) == 2
    err = capsys.readouterr().err
    assert "instructaudio: error:" in err and message in err and "Traceback" not in err
    assert not output.exists()


def _refused_before_loading(args: list[str]) -> subprocess.CompletedProcess:
    """Run the command where importing torch fails, so a check that needed it (or a model load) shows up."""
    code = "import sys; sys.modules['torch'] = None\nfrom instructaudio_diffusers.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--guidance", "nan"], "argument --guidance: must be from 1 to 100, got nan"),
        (["--guidance", "0.5"], "argument --guidance: must be from 1 to 100"),
        (["--guidance", "inf"], "argument --guidance"),
        (["--steps", "0"], "argument --steps: must be from 1 to 1000, got 0"),
        (["--steps", "1000000"], "argument --steps: must be from 1 to 1000"),
        (["--steps", "2.5"], "argument --steps: expected a whole number, got '2.5'"),
        (["--seconds", "-1"], "argument --seconds: must be a finite number > 0"),
        (["--seconds", "nan"], "argument --seconds"),
        (["--seed", str(2**70)], "argument --seed: must be from 0 to 18446744073709551615"),
        (["--seed", "-1"], "argument --seed"),
        (["--threads", "0"], "argument --threads: must be >= 1"),
        (["--dtype", "float8"], "argument --dtype: invalid choice"),
        (["--output", "{tmp}"], "is a folder"),
        (["--output", "{tmp}/out.mp3"], "has extension '.mp3'; the output is written as WAV"),
        (["--output", "{tmp}/out.txt"], "has extension '.txt'"),
        (["--output", "{tmp}/out"], "has no extension"),
        (["--output", "{tmp}/no/such/folder/out.wav"], "does not exist"),
        (["--output", "{tmp}/existing.wav"], "already exists; pass --overwrite"),
    ],
)
def test_bad_arguments_are_refused_before_torch_is_imported(model_dir, tmp_path, extra, message):
    (tmp_path / "existing.wav").write_bytes(b"keep me")
    extra = [item.replace("{tmp}", str(tmp_path)) for item in extra]
    result = _refused_before_loading(generate_args(model_dir, tmp_path / "out.wav", *extra))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "existing.wav").read_bytes() == b"keep me"


def test_output_folder_that_cannot_be_written_is_refused_before_loading(model_dir, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere permissions allow; /proc refuses new files even to root
        target = Path("/proc/instructaudio-out.wav")
        if not Path("/proc").is_dir():
            pytest.skip("needs a folder nobody may create files in")
    else:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o500)
        target = folder / "out.wav"
    result = _refused_before_loading(generate_args(model_dir, target))
    assert result.returncode == 2 and "cannot write to the output folder" in result.stderr


def test_stream_writes_the_same_clip_chunk_by_chunk(model_dir, tmp_path, capsys, monkeypatch):
    whole, streamed = tmp_path / "whole.wav", tmp_path / "streamed.wav"
    assert main(generate_args(model_dir, whole, "--seconds", "0.2")) == 0
    # 0.2 s is 100 mel frames of 16 samples: twelve chunks of 8 frames and one of 4.
    monkeypatch.setattr(InstructAudioPipeline, "vocoder_chunk_frames", 8)
    written, write = [], sf.SoundFile.write
    monkeypatch.setattr(
        sf.SoundFile, "write", lambda wav, data: written.append(len(data)) or write(wav, data)
    )
    assert main(generate_args(model_dir, streamed, "--seconds", "0.2", "--stream")) == 0
    assert "first chunk after" in capsys.readouterr().out
    assert written == [128] * 12 + [64]
    # Equal to the whole clip's samples within the rounding to 16 bits.
    assert abs(sf.read(whole)[0] - sf.read(streamed)[0]).max() <= 1 / 32768


def test_overwrite_replaces_an_existing_file(model_dir, tmp_path):
    output = tmp_path / "out.wav"
    output.write_bytes(b"old")
    assert main(generate_args(model_dir, output, "--seconds", "0.1", "--overwrite")) == 0
    assert len(sf.read(output)[0]) == 800
    assert [path.name for path in tmp_path.iterdir()] == ["out.wav"]  # no temporary file left behind


def test_missing_model_is_named(tmp_path, capsys):
    rc = main(
        [
            "generate",
            "--model",
            str(tmp_path / "nope"),
            "--instruction",
            "x",
            "--output",
            str(tmp_path / "o.wav"),
        ]
    )
    assert rc == 2 and "cannot load" in capsys.readouterr().err


def test_defaults_and_bounds_mirror_the_pipeline():
    # The CLI keeps its own copies so that `--help` and argument errors need no torch; they must not drift.
    import inspect

    from instructaudio_diffusers import cli
    from instructaudio_diffusers.pipelines import input_checks
    from instructaudio_diffusers.pipelines.pipeline_instructaudio import DEFAULT_INFERENCE_STEPS

    call = inspect.signature(InstructAudioPipeline.__call__).parameters
    assert cli.DEFAULT_STEPS == DEFAULT_INFERENCE_STEPS == call["num_inference_steps"].default
    assert cli.MAX_STEPS == input_checks.MAX_INFERENCE_STEPS
    assert cli.MAX_GUIDANCE == input_checks.MAX_GUIDANCE_SCALE
