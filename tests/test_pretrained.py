"""One loader by name (`instructaudio_diffusers.pretrained`): the demo model, a folder, or tiny-random."""

import pytest

from instructaudio_diffusers import InstructAudioPipeline, pretrained
from instructaudio_diffusers.testing_utils import get_dummy_components


def test_the_demo_model_is_found_in_a_source_checkout():
    assert pretrained.DEFAULT_MODEL is not None and pretrained.DEFAULT_MODEL.endswith(
        "checkpoints/instructaudio-demo"
    )


def test_a_wheel_install_says_the_demo_model_is_not_shipped(monkeypatch):
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", None)
    with pytest.raises(pretrained.ModelNotFoundError, match="not with the installed package.*--model"):
        pretrained.load_pipeline(None)


def test_a_missing_demo_model_names_the_flag_and_never_falls_back_to_random_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", str(tmp_path / "instructaudio-demo"))
    with pytest.raises(pretrained.ModelNotFoundError, match="demo model is not at .*--model .*tiny-random"):
        pretrained.load_pipeline(None)


def test_names_load_what_they_say(tmp_path):
    pipe, is_random = pretrained.load_pipeline(pretrained.TINY_RANDOM)
    assert is_random and isinstance(pipe, InstructAudioPipeline)
    folder = tmp_path / "pipeline"
    InstructAudioPipeline(**get_dummy_components()).save_pretrained(folder)
    assert pretrained.resolve_model(str(folder)) == str(folder)
    loaded, is_random = pretrained.load_pipeline(str(folder))
    assert not is_random
    for name, parameter in loaded.transformer.state_dict().items():
        assert parameter.equal(pipe.transformer.state_dict()[name]), name
