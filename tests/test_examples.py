"""Every example script runs end to end with tiny random weights and says so."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["speech_english.py", "speech_chinese.py", "dialogue.py", "music.py"])
def test_example_runs_with_tiny_random_weights(script, tmp_path):
    output = tmp_path / "out.wav"
    # As a user runs it: `python examples/<script>`, which finds its sibling `_common.py` by itself.
    command = [
        sys.executable,
        str(EXAMPLES / script),
        "--model",
        "tiny-random",
        "--steps",
        "2",
        "--output",
        str(output),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    assert "TINY RANDOM weights" in result.stderr
    audio, sampling_rate = sf.read(output)
    assert sampling_rate == 8000 and len(audio) > 0
    assert f"{len(audio) / sampling_rate:.2f} s" in result.stdout
