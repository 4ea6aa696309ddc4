import math

import numpy as np
import pytest
import soundfile as sf
import torch

from instructaudio_diffusers.audio import (
    LOG_MEL_FLOOR,
    MelSettings,
    MelSpectrogram,
    load_audio,
    resample,
    write_wav,
)


def _hz_to_mel_slaney(freq: float) -> float:
    # Slaney scale: linear below 1 kHz (3 mels / 200 Hz), logarithmic above.
    if freq < 1000.0:
        return 3.0 * freq / 200.0
    return 15.0 + 27.0 * math.log(freq / 1000.0) / math.log(6.4)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 6000.0])
def test_sine_peaks_at_its_mel_bin(freq):
    mel = MelSpectrogram(
        sampling_rate=22050, n_fft=1024, hop_length=256, n_mels=80, mel_fmin=0.0, mel_fmax=8000.0
    )
    t = torch.arange(22050) / 22050
    spec = mel(0.5 * torch.sin(2 * math.pi * freq * t))
    peak_bin = spec[0].mean(dim=-1).argmax().item()
    # Band centres are equally spaced on the slaney mel scale between fmin and fmax.
    top = _hz_to_mel_slaney(8000.0)
    expected = _hz_to_mel_slaney(freq) / top * (80 + 1) - 1
    assert abs(peak_bin - expected) <= 1.0, (peak_bin, expected)


@pytest.mark.parametrize("num_samples", [385, 511, 512, 1000, 22050, 22051])
def test_frame_count_rule_is_floor_of_samples_over_hop(num_samples):
    mel = MelSpectrogram(hop_length=256, n_fft=1024)
    frames = mel(torch.randn(num_samples)).shape[-1]
    assert frames == num_samples // 256 == mel.num_frames(num_samples)


def test_batched_equals_individual_and_is_differentiable():
    mel = MelSpectrogram(n_mels=40)
    audio = torch.randn(3, 4000, requires_grad=True)
    batched = mel(audio)
    single = torch.cat([mel(a) for a in audio])
    torch.testing.assert_close(batched, single)
    batched.sum().backward()
    assert audio.grad is not None and torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0


def test_silence_hits_the_log_floor():
    mel = MelSpectrogram()
    spec = mel(torch.zeros(4096))
    torch.testing.assert_close(spec, torch.full_like(spec, LOG_MEL_FLOOR))


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(0), "at least"),
        (torch.zeros(100), "at least"),
        (torch.zeros(2, 2, 4000), "shape"),
        (torch.tensor([float("nan")] * 4000), "NaN"),
        (torch.zeros(4000, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_waveforms_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        MelSpectrogram()(bad)


def test_bad_mel_config_raises():
    with pytest.raises(ValueError, match="mel_fmax"):
        MelSpectrogram(sampling_rate=16000, mel_fmax=9000.0)
    with pytest.raises(ValueError, match="must be even"):
        MelSpectrogram(n_fft=1024, hop_length=255)
    with pytest.raises(ValueError, match="win_length"):
        MelSettings(n_fft=512, win_length=1024)


def test_mel_settings_are_read_from_a_flat_config_with_defaults_and_overrides():
    config = {"sampling_rate": 16000, "n_fft": 512, "hop_length": 160, "num_mel_bins": 40, "other": 1}
    settings = MelSettings.from_config(config, n_mels=config["num_mel_bins"])
    assert settings == MelSettings(16000, 512, 160, None, 40, 0.0, 8000.0)
    spectrogram = settings.spectrogram()
    assert spectrogram.settings == settings and (spectrogram.win_length, spectrogram.n_mels) == (512, 40)
    assert MelSettings.from_config(settings.as_dict()) == settings


def test_mel_mismatches_compare_what_the_front_end_computes():
    settings = MelSettings()  # win_length unset: the window is n_fft long
    assert settings.mismatches({"win_length": 1024, "n_mels": 80}) == []
    assert settings.mismatches({"win_length": None, "mel_fmax": 8000}) == []
    assert MelSettings(mel_fmax=None).mismatches({"mel_fmax": 11025.0}) == []  # None is Nyquist
    assert settings.mismatches({"hop_length": 200, "win_length": 800, "sampling_rate": None}) == [
        "hop_length=200 (ours 256)",
        "win_length=800 (ours 1024)",
        "sampling_rate=None (ours 22050)",
    ]


def test_load_mixes_to_mono_and_resamples(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, sr)
    audio, out_sr = load_audio(path, sampling_rate=22050)
    assert out_sr == 22050 and audio.ndim == 1 and audio.dtype == np.float32
    assert abs(len(audio) - 22050) <= 1
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 22050 / len(audio) - 440) < 2


def test_write_then_read_round_trip(tmp_path):
    audio = (0.3 * np.sin(np.linspace(0, 100, 8000))).astype(np.float32)
    write_wav(tmp_path / "a.wav", torch.from_numpy(audio), 16000)
    back, sr = load_audio(tmp_path / "a.wav")
    assert sr == 16000
    np.testing.assert_allclose(back, audio, atol=1e-4)


def test_audio_io_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="cannot decode"):
        load_audio(tmp_path / "junk.wav")
    with pytest.raises(ValueError, match="empty"):
        write_wav(tmp_path / "e.wav", np.zeros(0), 16000)
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10), 0, 16000)
