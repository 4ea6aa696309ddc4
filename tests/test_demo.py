"""The main job, examples/demo.py (`make demo`): four clips and one mel-spectrogram PNG."""

import runpy
from pathlib import Path

import pytest
import soundfile as sf

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.testing_utils import get_dummy_components

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


@pytest.fixture(scope="module")
def demo():
    return runpy.run_path(str(DEMO), run_name="demo")


def test_demo_writes_every_task_and_one_mel_png(tmp_path, demo, capsys):
    model = tmp_path / "model"
    InstructAudioPipeline(**get_dummy_components()).save_pretrained(model)
    out = tmp_path / "outputs"
    assert demo["main"](["--model", str(model), "--output_dir", str(out), "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    names = [name for name, _, _ in demo["DEMO_PROMPTS"]]
    assert names == ["speech_en.wav", "speech_zh.wav", "dialogue.wav", "music.wav"]
    for name in names:
        audio, sampling_rate = sf.read(out / name)
        assert sampling_rate == 8000 and len(audio) > 0 and abs(audio).max() > 0
        assert f"wrote {out / name}: {len(audio) / sampling_rate:.2f} s" in printed
    png = out / "mel_spectrograms.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in printed
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert (width, height) == (800, 4 * 260)  # one 2.6-inch panel per clip at 100 dpi


def test_demo_names_a_missing_default_model(tmp_path, demo, capsys, monkeypatch):
    from instructaudio_diffusers import pretrained

    missing = str(tmp_path / "instructaudio-demo")
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", missing)
    assert demo["main"]([]) == 2
    err = capsys.readouterr().err
    assert f"demo model is not at {missing}" in err and "--model" in err
