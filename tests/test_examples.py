"""Every example script runs end to end with tiny random weights and says so."""

import runpy
import sys
from pathlib import Path

import pytest
import soundfile as sf

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["speech_english.py", "speech_chinese.py", "dialogue.py", "music.py"])
def test_example_runs_with_tiny_random_weights(script, tmp_path, monkeypatch, capsys):
    output = tmp_path / "out.wav"
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [script, "--steps", "2", "--output", str(output)])
    runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    captured = capsys.readouterr()
    assert "TINY RANDOM weights" in captured.err
    audio, sampling_rate = sf.read(output)
    assert sampling_rate == 8000 and len(audio) > 0
    assert f"{len(audio) / sampling_rate:.2f} s" in captured.out
