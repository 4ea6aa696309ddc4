import json
from pathlib import Path

import pytest
import torch

from instructaudio_diffusers import InstructAudioTransformerModel
from instructaudio_diffusers.models.transformer_instructaudio import (
    TEXT_TOKEN_INSTRUCTION,
    TEXT_TOKEN_PHONEME,
    TEXT_TOKEN_REGISTER,
    InstructAudioTextCondition,
)
from instructaudio_diffusers.training.transformer.objective import total_duration_loss

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = dict(
    in_channels=8,
    num_joint_layers=2,
    num_single_layers=1,
    hidden_size=32,
    num_attention_heads=2,
    ff_mult=2.0,
    ff_kernel_size=3,
    instruction_dim=16,
    phoneme_vocab_size=20,
    phoneme_encoder_layers=1,
    phoneme_encoder_hidden_size=16,
    phoneme_encoder_heads=2,
    phoneme_encoder_ff_size=32,
    duration_predictor_hidden_size=16,
    timestep_embedding_dim=32,
    max_audio_frames=64,
)


pytestmark = pytest.mark.usefixtures("single_thread")


def make_model(randomize: bool = True, **overrides) -> InstructAudioTransformerModel:
    torch.manual_seed(0)
    model = InstructAudioTransformerModel(**{**TINY, **overrides}).eval()
    if randomize:
        # The zero-initialised output and AdaLN layers make a fresh model output exactly 0, which would pass
        # every masking test trivially: give every weight a non-trivial value.
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


# The phoneme placements under test: the paper's (attention only), the uniform stretch, and durations (with the
# pooled instruction, as the demo configuration has them).
MODES = {
    "plain": {},
    "stretched": {"stretched_phoneme_input": True},
    "durations": {"phoneme_alignment": "durations", "pooled_instruction_conditioning": True},
}


def random_durations(phoneme_mask, frames, generator):
    """Random whole-frame durations per valid phoneme (some zero), each row summing to its valid frames."""
    durations = torch.zeros(phoneme_mask.shape, dtype=torch.long)
    for row, (mask, total) in enumerate(zip(phoneme_mask, frames)):
        count = int(mask.sum())
        if count:
            cuts = torch.sort(torch.randint(0, int(total) + 1, (count - 1,), generator=generator)).values
            bounds = torch.cat([torch.tensor([0]), cuts, torch.tensor([int(total)])])
            durations[row, :count] = bounds.diff()
    return durations


def make_inputs(batch_size=2, frames=12, instruction_len=5, phoneme_len=7, seed=0, durations=False):
    generator = torch.Generator().manual_seed(seed)
    inputs = dict(
        hidden_states=torch.randn(batch_size, TINY["in_channels"], frames, generator=generator),
        timestep=torch.rand(batch_size, generator=generator) * 1000,
        encoder_hidden_states=torch.randn(
            batch_size, instruction_len, TINY["instruction_dim"], generator=generator
        ),
        encoder_attention_mask=torch.ones(batch_size, instruction_len, dtype=torch.bool),
        phoneme_ids=torch.randint(
            1, TINY["phoneme_vocab_size"], (batch_size, phoneme_len), generator=generator
        ),
        phoneme_attention_mask=torch.ones(batch_size, phoneme_len, dtype=torch.bool),
        audio_attention_mask=torch.ones(batch_size, frames, dtype=torch.bool),
    )
    if durations:
        inputs["phoneme_durations"] = random_durations(
            inputs["phoneme_attention_mask"], [frames] * batch_size, generator
        )
    return inputs


def test_output_shape_and_tuple():
    model = make_model()
    inputs = make_inputs()
    with torch.no_grad():
        output = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
        with_duration = model(**inputs, return_log_duration=True, return_dict=False)
    assert output.sample.shape == (2, 8, 12)
    assert output.predicted_log_frames is None
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    torch.testing.assert_close(as_tuple[0], output.sample, rtol=0, atol=0)
    assert len(with_duration) == 2 and with_duration[1].shape == (2,)


def test_zero_output_at_init_still_trains_the_output_layer():
    model = make_model(randomize=False).train()
    output = model(**make_inputs()).sample
    assert torch.count_nonzero(output) == 0
    output.sub(1.0).pow(2).mean().backward()
    assert model.proj_out.weight.grad.abs().sum() > 0


def test_gradient_reaches_every_parameter():
    model = make_model().train()
    inputs = make_inputs()
    output = model(**inputs, return_log_duration=True)
    loss = output.sample.pow(2).mean() + total_duration_loss(
        output.predicted_log_frames, torch.tensor([9, 12])
    )
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"


def test_save_load_round_trip(tmp_path):
    model = make_model()
    inputs = make_inputs()
    model.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert "diffusion_pytorch_model.safetensors" in files
    assert not any(name.endswith(".bin") for name in files)
    loaded = InstructAudioTransformerModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        difference = (model(**inputs).sample - loaded(**inputs).sample).abs().max()
    assert difference < 5e-4


def test_deterministic():
    inputs = make_inputs()
    with torch.no_grad():
        first = make_model()(**inputs).sample
        model = make_model()
        second, third = model(**inputs).sample, model(**inputs).sample
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(second, third, rtol=0, atol=0)


def _pad(tensor, length, dim, generator, fill=None):
    extra = list(tensor.shape)
    extra[dim] = length - tensor.shape[dim]
    if fill is not None:
        padding = torch.full(extra, fill, dtype=tensor.dtype)
    elif tensor.dtype == torch.long:
        # Garbage ids, not the padding id: the mask alone must hide them.
        padding = torch.randint(1, TINY["phoneme_vocab_size"], extra, generator=generator)
    else:
        padding = torch.randn(extra, generator=generator) * 100
    return torch.cat([tensor, padding], dim=dim)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("padded", ["phonemes", "instruction", "audio", "all"])
def test_padding_never_changes_valid_outputs(padded, mode):
    """Sample A run alone must give the same valid outputs when batched with a longer sample B, A being padded
    with garbage under a False mask."""
    model = make_model(**MODES[mode])
    durations = mode == "durations"
    generator = torch.Generator().manual_seed(3)
    a = make_inputs(batch_size=1, frames=10, instruction_len=3, phoneme_len=5, seed=1, durations=durations)
    lengths = dict(
        frames=14 if padded in ("audio", "all") else 10,
        instruction_len=6 if padded in ("instruction", "all") else 3,
        phoneme_len=9 if padded in ("phonemes", "all") else 5,
    )
    b = make_inputs(batch_size=1, seed=2, durations=durations, **lengths)
    a_padded = {}
    padded_keys = [
        ("hidden_states", 2, lengths["frames"]),
        ("audio_attention_mask", 1, lengths["frames"]),
        ("encoder_hidden_states", 1, lengths["instruction_len"]),
        ("encoder_attention_mask", 1, lengths["instruction_len"]),
        ("phoneme_ids", 1, lengths["phoneme_len"]),
        ("phoneme_attention_mask", 1, lengths["phoneme_len"]),
    ]
    if durations:
        padded_keys.append(("phoneme_durations", 1, lengths["phoneme_len"]))
    for key, dim, length in padded_keys:
        fill = False if key.endswith("mask") else None
        if key == "phoneme_durations":  # garbage durations for padded phonemes: the mask must hide them
            fill = 7
        a_padded[key] = _pad(a[key], length, dim, generator, fill)
    batch = {key: torch.cat([a_padded[key], b[key]]) for key in a_padded}
    batch["timestep"] = torch.cat([a["timestep"], b["timestep"]])

    with torch.no_grad():
        alone = model(**a).sample
        padded_alone = model(**a_padded, timestep=a["timestep"]).sample
        batched = model(**batch).sample
        b_alone = model(**b).sample
    assert alone.abs().max() > 1e-3
    for result in (padded_alone, batched[:1]):
        torch.testing.assert_close(result[..., :10], alone, rtol=0, atol=1e-5)
        assert torch.count_nonzero(result[..., 10:]) == 0
    torch.testing.assert_close(batched[1:], b_alone, rtol=0, atol=1e-5)


def test_left_padded_instruction_matches_right_padded():
    model = make_model()
    inputs = make_inputs(batch_size=1, instruction_len=4)
    states, mask = inputs["encoder_hidden_states"], inputs["encoder_attention_mask"]
    garbage = torch.randn(1, 2, TINY["instruction_dim"])
    no = torch.zeros(1, 2, dtype=torch.bool)
    with torch.no_grad():
        right = model(
            **{
                **inputs,
                "encoder_hidden_states": torch.cat([states, garbage], 1),
                "encoder_attention_mask": torch.cat([mask, no], 1),
            }
        ).sample
        left = model(
            **{
                **inputs,
                "encoder_hidden_states": torch.cat([garbage, states], 1),
                "encoder_attention_mask": torch.cat([no, mask], 1),
            }
        ).sample
    torch.testing.assert_close(left, right, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_all_false_masks_give_finite_output_and_change_only_their_sample(mode):
    model = make_model(**MODES[mode])
    durations = mode == "durations"
    inputs = make_inputs(batch_size=3, durations=durations)
    inputs["phoneme_attention_mask"][0] = False
    inputs["encoder_attention_mask"][1] = False
    inputs["phoneme_attention_mask"][2] = False
    inputs["encoder_attention_mask"][2] = False
    with torch.no_grad():
        output = model(**inputs, return_log_duration=True)
        predicted = output.predicted_log_durations if durations else output.predicted_log_frames
        assert torch.isfinite(output.sample).all() and torch.isfinite(predicted).all()

        # Training drops a clip's text this way (classifier-free guidance): only that clip's velocity changes.
        full = make_inputs(batch_size=3, durations=durations)
        masked = dict(full, phoneme_attention_mask=full["phoneme_attention_mask"].clone())
        masked["phoneme_attention_mask"][0] = False
        kept, dropped = model(**full).sample, model(**masked).sample
        assert not torch.allclose(dropped[0], kept[0])
        torch.testing.assert_close(dropped[1:], kept[1:], rtol=0, atol=1e-5)


def test_stretched_phonemes_cover_the_frames_uniformly():
    model = make_model(stretched_phoneme_input=True)
    inputs = make_inputs(batch_size=2, frames=10, instruction_len=3, phoneme_len=4)
    inputs["phoneme_attention_mask"][1, 2:] = False  # sample 1: 2 phonemes
    inputs["encoder_attention_mask"][1, 1:] = False  # and 1 instruction token: a different packing
    inputs["audio_attention_mask"][1, 7:] = False  # over 7 frames
    with torch.no_grad():
        condition = model.encode_text_condition(
            inputs["encoder_hidden_states"],
            inputs["encoder_attention_mask"],
            inputs["phoneme_ids"],
            inputs["phoneme_attention_mask"],
        )
        stretched = condition.stretched_phoneme_states(
            condition.attention_mask, inputs["audio_attention_mask"]
        )
    # Phoneme k of L covers the frames whose centre lies in [k T / L, (k + 1) T / L).
    expected_phoneme = [[0, 0, 1, 1, 1, 2, 2, 3, 3, 3], [0, 0, 0, 1, 1, 1, 1]]
    for sample, phonemes in enumerate(expected_phoneme):
        is_phoneme = condition.token_types[sample] == TEXT_TOKEN_PHONEME
        phoneme_states = condition.hidden_states[sample][is_phoneme & condition.attention_mask[sample]]
        torch.testing.assert_close(stretched[sample, : len(phonemes)], phoneme_states[phonemes])
        assert torch.count_nonzero(stretched[sample, len(phonemes) :]) == 0

    # Dropped phonemes (classifier-free guidance) leave the audio input alone.
    dropped_mask = condition.attention_mask & (condition.token_types != TEXT_TOKEN_PHONEME)
    dropped = condition.stretched_phoneme_states(dropped_mask, inputs["audio_attention_mask"])
    assert torch.count_nonzero(dropped) == 0

    # Off by default (the paper's architecture) and in the saved config when on.
    assert make_model().stretched_phoneme_proj is None
    assert model.config.stretched_phoneme_input is True


def test_precomputed_text_condition_matches():
    model = make_model()
    inputs = make_inputs()
    text_keys = ["encoder_hidden_states", "encoder_attention_mask", "phoneme_ids", "phoneme_attention_mask"]
    with torch.no_grad():
        condition = model.encode_text_condition(*(inputs[key] for key in text_keys))
        rest = {key: value for key, value in inputs.items() if key not in text_keys}
        torch.testing.assert_close(model(**rest, text_condition=condition).sample, model(**inputs).sample)

        # Conditions encoded separately and concatenated (e.g. for CFG) behave like one batched encoding.
        other = make_inputs(seed=5, phoneme_len=3)
        other_condition = model.encode_text_condition(*(other[key] for key in text_keys))
        both = InstructAudioTextCondition.cat([condition, other_condition])
        doubled = {key: torch.cat([value, value]) for key, value in rest.items()}
        output = model(**doubled, text_condition=both).sample
        torch.testing.assert_close(output[:2], model(**inputs).sample, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            output[2:], model(**rest, text_condition=other_condition).sample, rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("mode", list(MODES))
def test_precomputed_joint_condition_matches(mode):
    # What the pipeline does: masks, rotary table and placed phonemes built once, then read at every step.
    model = make_model(**MODES[mode])
    inputs = make_inputs(batch_size=2, durations=mode == "durations")
    inputs["audio_attention_mask"][1, 9:] = False
    inputs["phoneme_attention_mask"][1, 5:] = False
    text_keys = ["encoder_hidden_states", "encoder_attention_mask", "phoneme_ids", "phoneme_attention_mask"]
    with torch.no_grad():
        text_condition = model.encode_text_condition(*(inputs[key] for key in text_keys))
        if "phoneme_durations" in inputs:
            text_condition = text_condition.with_durations(inputs["phoneme_durations"])
        joint_condition = model.prepare_joint_condition(text_condition, inputs["audio_attention_mask"])
        assert (joint_condition.frame_phoneme_states is None) == (mode == "plain")
        for timestep in (inputs["timestep"], inputs["timestep"] / 3):  # reused at another step
            cached = model(
                hidden_states=inputs["hidden_states"],
                timestep=timestep,
                text_condition=text_condition,
                joint_condition=joint_condition,
            ).sample
            uncached = model(**{**inputs, "timestep": timestep}).sample
            torch.testing.assert_close(cached, uncached, rtol=0, atol=0)


def test_joint_condition_refuses_what_it_already_holds():
    model = make_model()
    inputs = make_inputs()
    text_keys = ["encoder_hidden_states", "encoder_attention_mask", "phoneme_ids", "phoneme_attention_mask"]
    with torch.no_grad():
        text_condition = model.encode_text_condition(*(inputs[key] for key in text_keys))
        joint_condition = model.prepare_joint_condition(text_condition, inputs["audio_attention_mask"])
        step = dict(hidden_states=inputs["hidden_states"], timestep=inputs["timestep"])
        with pytest.raises(ValueError, match="audio_attention_mask"):
            model(
                **step,
                text_condition=text_condition,
                joint_condition=joint_condition,
                audio_attention_mask=inputs["audio_attention_mask"],
            )
        with pytest.raises(ValueError, match="build it from this `text_condition`"):
            model(
                hidden_states=inputs["hidden_states"][..., :-1],
                timestep=inputs["timestep"],
                text_condition=text_condition,
                joint_condition=joint_condition,
            )
    durations_model = make_model(**MODES["durations"])
    condition = durations_model.encode_text_condition(*(inputs[key] for key in text_keys))
    with pytest.raises(ValueError, match="phoneme_durations"):
        durations_model.prepare_joint_condition(condition, inputs["audio_attention_mask"])


def test_aligned_rope_positions_per_sample():
    model = make_model()
    instruction_mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    phoneme_mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    audio_mask = torch.ones(2, 10, dtype=torch.bool)
    audio_mask[1, 8:] = False
    condition = model.encode_text_condition(
        torch.randn(2, 3, TINY["instruction_dim"]),
        instruction_mask,
        torch.randint(1, 20, (2, 5)),
        phoneme_mask,
    )
    # Valid tokens packed first: [register, instruction..., phonemes...].
    assert condition.attention_mask.tolist() == [[True] * 7 + [False] * 2, [True] * 9]
    assert (
        condition.token_types[0, :7].tolist()
        == [TEXT_TOKEN_REGISTER] + [TEXT_TOKEN_INSTRUCTION] * 2 + [TEXT_TOKEN_PHONEME] * 4
    )
    positions = condition.rope_positions(audio_mask)
    assert positions.shape == (2, 9 + 10)
    # Sample 0: 2 instruction tokens, 4 phonemes over 10 frames; sample 1: 3 tokens, 5 phonemes over 8 frames.
    torch.testing.assert_close(positions[0, :7], torch.tensor([-3.0, -2.0, -1.0, 0.0, 2.5, 5.0, 7.5]))
    torch.testing.assert_close(
        positions[1, :9], torch.tensor([-4.0, -3.0, -2.0, -1.0, 0.0, 1.6, 3.2, 4.8, 6.4])
    )
    torch.testing.assert_close(positions[0, 9:], torch.arange(10.0))
    torch.testing.assert_close(positions[1, 9:17], torch.arange(8.0))


def test_gradient_checkpointing_gives_same_gradients():
    inputs = make_inputs()

    def gradients(checkpointing):
        model = make_model().train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        output = model(**inputs, return_log_duration=True)
        loss = output.sample.pow(2).mean() + total_duration_loss(
            output.predicted_log_frames, torch.tensor([9, 12])
        )
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain, checkpointed = gradients(False), gradients(True)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_duration_predictor_and_loss():
    model = make_model().train()
    inputs = make_inputs(batch_size=3)
    text_keys = ["encoder_hidden_states", "encoder_attention_mask", "phoneme_ids", "phoneme_attention_mask"]
    predicted = model.predict_duration(*(inputs[key] for key in text_keys))
    assert predicted.shape == (3,) and predicted.dtype == torch.float32
    torch.testing.assert_close(predicted, model(**inputs, return_log_duration=True).predicted_log_frames)

    target = torch.tensor([10, 40, 100])
    loss = total_duration_loss(predicted, target)
    assert loss.ndim == 0 and loss > 0
    assert total_duration_loss(torch.log(target.float()), target) == 0
    masked = total_duration_loss(predicted, target, sample_mask=torch.tensor([True, False, False]))
    torch.testing.assert_close(masked, (predicted[0] - torch.log(torch.tensor(10.0))).abs())

    # The head reads a detached text stream: its loss trains the head only.
    loss.backward()
    assert all(p.grad is None for p in model.phoneme_encoder.parameters())
    assert all(p.grad is not None for p in model.duration_predictor.parameters())


def test_rejects_too_many_frames():
    model = make_model()
    with pytest.raises(ValueError, match="max_audio_frames"):
        model(**make_inputs(frames=65))


def test_bf16_smoke():
    model = make_model().to(torch.bfloat16)
    inputs = make_inputs()
    inputs["hidden_states"] = inputs["hidden_states"].to(torch.bfloat16)
    inputs["encoder_hidden_states"] = inputs["encoder_hidden_states"].to(torch.bfloat16)
    with torch.no_grad():
        output = model(**inputs, return_log_duration=True)
    assert output.sample.dtype == torch.bfloat16 and torch.isfinite(output.sample).all()


def _meta_model(name):
    config = json.loads((CONFIGS / name / "transformer" / "config.json").read_text())
    with torch.device("meta"):
        return InstructAudioTransformerModel.from_config(config)


def test_paper_config_parameter_count():
    model = _meta_model("paper")
    assert model.config.num_joint_layers == 14 and model.config.num_single_layers == 6
    assert model.config.hidden_size == 1024 and model.config.instruction_dim == 3584
    count = sum(p.numel() for p in model.parameters())
    print(f"paper transformer parameters: {count / 1e9:.3f} B")
    assert abs(count - 1.3e9) <= 0.1 * 1.3e9


def test_demo_config_parameter_count():
    model = _meta_model("demo")
    assert model.config.in_channels == 24 and model.config.instruction_dim == 384
    count = sum(p.numel() for p in model.parameters())
    print(f"demo transformer parameters: {count / 1e6:.2f} M")
    assert 5e6 <= count <= 16e6


def test_attention_never_offers_cudnn_sdpa(monkeypatch):
    # cuDNN attention re-plans for every new sequence length (7x slower bf16 training on an H200, see
    # models/attention.py); checkpointed recomputation during backward must keep it out as well.
    from instructaudio_diffusers.models import attention

    cudnn_allowed = []
    original = attention.dispatch_attention_fn

    def recording(*args, **kwargs):
        cudnn_allowed.append(torch.backends.cuda.cudnn_sdp_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(attention, "dispatch_attention_fn", recording)
    model = make_model().train()
    model.enable_gradient_checkpointing()
    model(**make_inputs()).sample.pow(2).mean().backward()
    blocks = TINY["num_joint_layers"] + TINY["num_single_layers"]
    assert len(cudnn_allowed) >= 2 * blocks  # forward and recomputation
    assert not any(cudnn_allowed)
    assert torch.backends.cuda.cudnn_sdp_enabled()  # the global setting is restored afterwards
