"""`instructaudio generate` end to end on a saved tiny pipeline."""

import pytest
import soundfile as sf

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.cli import main
from instructaudio_diffusers.testing_utils import get_dummy_components


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-pipeline")
    InstructAudioPipeline(**get_dummy_components()).save_pretrained(path)
    return path


def test_generate_writes_the_requested_length(model_dir, tmp_path, capsys):
    output = tmp_path / "out.wav"
    args = ["generate", "--model", str(model_dir), "--instruction", "A calm man speaks.", "--text", "Hello."]
    rc = main(args + ["--output", str(output), "--seconds", "0.2", "--steps", "2", "--seed", "3"])
    assert rc == 0
    audio, sampling_rate = sf.read(output)
    assert sampling_rate == 8000 and len(audio) == 1600
    assert "real-time factor" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "[S9] hi"], "S9"),
        (["--seconds", "-1"], "audio_length_in_s"),
        (["--steps", "0"], "num_inference_steps"),
        (["--output", "/no/such/folder/out.wav"], "does not exist"),
    ],
)
def test_bad_input_gives_a_clear_error(model_dir, tmp_path, capsys, extra, message):
    args = ["generate", "--model", str(model_dir), "--instruction", "A calm man speaks.", "--text", "Hello."]
    args += ["--output", str(tmp_path / "out.wav"), "--steps", "1"]
    rc = main(args + extra)
    assert rc == 2
    err = capsys.readouterr().err
    assert "instructaudio: error:" in err and message in err and "Traceback" not in err


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
