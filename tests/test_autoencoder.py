import pytest
import torch

from instructaudio_diffusers import AutoencoderKLMel

TINY = dict(
    n_mels=16, latent_channels=4, block_out_channels=(16, 32), downsample_factors=(2,), layers_per_block=1
)


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return AutoencoderKLMel(**TINY).eval()


@pytest.mark.parametrize("frames", [1, 2, 7, 37, 64])
def test_shapes_for_any_length(vae, frames):
    mel = torch.randn(2, 16, frames)
    posterior = vae.encode(mel).latent_dist
    assert posterior.mean.shape == (2, 4, -(-frames // 2)) == (2, 4, vae.num_latent_frames(frames))
    assert vae(mel).sample.shape == mel.shape
    # Without num_frames the decoder returns the padded length; never fewer frames than the input.
    assert vae.decode(posterior.mode()).sample.shape[-1] == 2 * posterior.mean.shape[-1] >= frames


def test_three_stage_downsampling():
    torch.manual_seed(0)
    vae = AutoencoderKLMel(
        n_mels=8,
        latent_channels=2,
        block_out_channels=(8, 8, 8),
        downsample_factors=(2, 3),
        layers_per_block=1,
    )
    assert vae.time_downsample_factor == 6
    mel = torch.randn(1, 8, 25)
    assert vae.encode(mel).latent_dist.mean.shape[-1] == 5
    assert vae(mel).sample.shape == mel.shape


def test_return_dict_false(vae):
    mel = torch.randn(1, 16, 10)
    (posterior,) = vae.encode(mel, return_dict=False)
    (decoded,) = vae.decode(posterior.mode(), return_dict=False)
    assert decoded.shape == (1, 16, 10)


def test_save_load_round_trip_is_bit_exact(vae, tmp_path):
    vae.register_to_config(
        latents_mean=[0.1, 0.2, 0.3, 0.4], latents_std=[1.0, 2.0, 3.0, 4.0], scaling_factor=0.5
    )
    vae.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    reloaded = AutoencoderKLMel.from_pretrained(tmp_path).eval()
    mel = torch.randn(2, 16, 21)
    assert torch.equal(vae(mel).sample, reloaded(mel).sample)
    assert reloaded.config.latents_std == [1.0, 2.0, 3.0, 4.0]


def test_sampling_is_deterministic_with_a_generator(vae):
    mel = torch.randn(1, 16, 12)
    posterior = vae.encode(mel).latent_dist
    a = posterior.sample(generator=torch.Generator().manual_seed(3))
    b = posterior.sample(generator=torch.Generator().manual_seed(3))
    c = posterior.sample(generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    out1 = vae(mel, sample_posterior=True, generator=torch.Generator().manual_seed(1)).sample
    out2 = vae(mel, sample_posterior=True, generator=torch.Generator().manual_seed(1)).sample
    assert torch.equal(out1, out2)


def test_gradients_reach_every_parameter(vae):
    vae.train()
    mel = torch.randn(2, 16, 20)
    posterior = vae.encode(mel).latent_dist
    recon = vae.decode(posterior.sample(generator=torch.Generator().manual_seed(0)), num_frames=20).sample
    loss = (recon - mel).abs().mean() + 1e-6 * posterior.kl().mean()
    loss.backward()
    missing = [name for name, p in vae.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_kl_is_per_sample_and_zero_for_a_standard_normal(vae):
    mel = torch.randn(3, 16, 8)
    posterior = vae.encode(mel).latent_dist
    assert posterior.kl().shape == (3,)
    # Parameters (mean=0, logvar=0) describe N(0, 1) exactly, whose KL to the prior is zero.
    from instructaudio_diffusers.models.autoencoder_kl_mel import MelDiagonalGaussianDistribution

    standard = MelDiagonalGaussianDistribution(torch.zeros(3, 8, 4))
    torch.testing.assert_close(standard.kl(), torch.zeros(3))
    assert standard.nll(torch.zeros(3, 4, 4)).shape == (3,)


def test_length_independence_no_padding_leak(vae):
    # Per-frame norms make the model time-local: appending frames far away does not change early output.
    mel = torch.randn(1, 16, 40)
    longer = torch.cat([mel, torch.randn(1, 16, 200)], dim=-1)
    radius_mel = 2 * sum(vae.receptive_radius())
    short_out = vae(mel).sample[..., : 40 - radius_mel]
    long_out = vae(longer).sample[..., : 40 - radius_mel]
    torch.testing.assert_close(short_out, long_out, atol=1e-5, rtol=0)


def test_tiling_and_slicing_match_untiled(vae):
    mel = torch.randn(3, 16, 301)
    reference_latents = vae.encode(mel).latent_dist.mode()
    reference_mel = vae.decode(reference_latents, num_frames=301).sample
    vae.enable_tiling(tile_latent_frames=16)
    vae.enable_slicing()
    latents = vae.encode(mel).latent_dist.mode()
    torch.testing.assert_close(latents, reference_latents, atol=1e-5, rtol=0)
    torch.testing.assert_close(vae.decode(latents, num_frames=301).sample, reference_mel, atol=1e-5, rtol=0)


def test_latent_normalisation_round_trip():
    vae = AutoencoderKLMel(
        **TINY, latents_mean=[1.0, -1.0, 0.5, 0.0], latents_std=[2.0, 0.5, 1.0, 4.0], scaling_factor=0.7
    )
    latents = torch.randn(2, 4, 9) * 3
    normalised = vae.normalize_latents(latents)
    torch.testing.assert_close(vae.denormalize_latents(normalised), latents)
    torch.testing.assert_close(normalised[:, 0], (latents[:, 0] - 1.0) / 2.0 * 0.7)


def test_mel_config_lives_in_the_vae():
    vae = AutoencoderKLMel(
        **TINY, sampling_rate=16000, hop_length=160, n_fft=512, win_length=400, mel_fmax=None
    )
    mel = vae.mel_spectrogram()
    assert (mel.sampling_rate, mel.hop_length, mel.n_fft, mel.win_length, mel.n_mels) == (
        16000,
        160,
        512,
        400,
        16,
    )
    assert vae.latent_frame_rate == 16000 / 160 / 2
    assert vae.mel_settings == mel.settings
    assert mel(torch.randn(16000)).shape == (1, 16, 100)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.randn(16, 10), "shape"),
        (torch.randn(1, 15, 10), "15 channels"),
        (torch.randn(1, 16, 0), "empty"),
        (torch.full((1, 16, 5), float("nan")), "NaN"),
        (torch.ones(1, 16, 5, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_input_raises(vae, bad, match):
    with pytest.raises(ValueError, match=match):
        vae.encode(bad)


def test_bad_config_and_decode_args_raise(vae):
    with pytest.raises(ValueError, match="downsample_factors"):
        AutoencoderKLMel(**{**TINY, "downsample_factors": (2, 2)})
    with pytest.raises(ValueError, match="latents_mean"):
        AutoencoderKLMel(**TINY, latents_mean=[0.0])
    with pytest.raises(ValueError, match="mel_fmax"):  # the mel front end is checked when the VAE is built
        AutoencoderKLMel(**TINY, sampling_rate=8000, mel_fmax=6000.0)
    with pytest.raises(ValueError, match="num_frames"):
        vae.decode(torch.randn(1, 4, 5), num_frames=11)
    with pytest.raises(ValueError, match="4 channels|channels"):
        vae.decode(torch.randn(1, 5, 5))


@pytest.mark.parametrize(
    "config_dir, expected_millions", [("configs/demo/vae", 3.9), ("configs/paper/vae", 89.7)]
)
def test_shipped_configs_build_on_meta(config_dir, expected_millions):
    with torch.device("meta"):
        vae = AutoencoderKLMel.from_config(AutoencoderKLMel.load_config(config_dir))
    assert abs(sum(p.numel() for p in vae.parameters()) / 1e6 - expected_millions) < 0.1
    assert abs(vae.latent_frame_rate - 43.07) < 0.01
