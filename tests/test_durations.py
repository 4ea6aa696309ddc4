"""Duration-aligned conditioning: the text condition's durations, the per-token predictor, the pooled instruction,
and the pipeline that predicts durations and fits them to a requested length."""

import numpy as np
import pytest
import torch

from instructaudio_diffusers import InstructAudioPipeline, InstructAudioTransformerModel
from instructaudio_diffusers.models.text_condition import TEXT_TOKEN_PHONEME, InstructAudioTextCondition
from instructaudio_diffusers.pipelines.pipeline_instructaudio import fit_durations
from instructaudio_diffusers.testing_utils import get_dummy_components, get_dummy_inputs
from instructaudio_diffusers.training.transformer.objective import token_duration_loss
from test_transformer import TINY, make_inputs, make_model

pytestmark = pytest.mark.usefixtures("single_thread")


DURATIONS = {"phoneme_alignment": "durations", "pooled_instruction_conditioning": True}


def test_configuration_is_checked_and_the_old_spelling_still_loads():
    with pytest.raises(ValueError, match="phoneme_alignment"):
        InstructAudioTransformerModel(**TINY, phoneme_alignment="stretched")
    with pytest.raises(ValueError, match="contradicts"):
        InstructAudioTransformerModel(**TINY, stretched_phoneme_input=True, phoneme_alignment="durations")
    assert InstructAudioTransformerModel(**TINY, stretched_phoneme_input=True).phoneme_alignment == "uniform"
    durations = InstructAudioTransformerModel(**TINY, phoneme_alignment="durations")
    assert durations.duration_predictor is None and durations.token_duration_predictor is not None
    plain = InstructAudioTransformerModel(**TINY)
    assert plain.token_duration_predictor is None and plain.pooled_instruction_embedder is None


def test_phonemes_move_in_and_out_of_the_packed_stream():
    model = make_model(**DURATIONS)
    inputs = make_inputs(batch_size=2, instruction_len=3, phoneme_len=4)
    inputs["encoder_attention_mask"][0, 1] = False  # padding in the middle of the stream
    inputs["phoneme_attention_mask"][1, 3] = False
    with torch.no_grad():
        condition = model.encode_text_condition(
            inputs["encoder_hidden_states"],
            inputs["encoder_attention_mask"],
            inputs["phoneme_ids"],
            inputs["phoneme_attention_mask"],
        )
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    stream = condition.phonemes_to_stream(values)
    assert stream[~condition.is_phoneme].eq(0).all()
    back = condition.stream_to_phonemes(stream, 4)
    torch.testing.assert_close(back, values * inputs["phoneme_attention_mask"])

    unconditional = model.encode_text_condition(
        torch.zeros(2, 3, TINY["instruction_dim"]), torch.zeros(2, 3, dtype=torch.bool)
    )
    both = InstructAudioTextCondition.cat([condition.with_durations(values), unconditional])
    assert both.durations.shape == both.attention_mask.shape
    assert both.durations[2:].eq(0).all() and both.phoneme_index[2:].eq(-1).all()


def test_frames_receive_the_phoneme_their_durations_place_there():
    model = make_model(**DURATIONS)
    inputs = make_inputs(batch_size=1, frames=8, instruction_len=2, phoneme_len=4)
    durations = torch.tensor([[3, 0, 4, 1]])
    with torch.no_grad():
        condition = model.encode_text_condition(
            inputs["encoder_hidden_states"], None, inputs["phoneme_ids"], None, phoneme_durations=durations
        )
    frame_mask = torch.ones(1, 8, dtype=torch.bool)
    placed = condition.phoneme_states_by_durations(condition.attention_mask, frame_mask)
    phoneme_states = condition.hidden_states[0, condition.token_types[0] == TEXT_TOKEN_PHONEME]
    expected_token = [0, 0, 0, 2, 2, 2, 2, 3]
    for frame, token in enumerate(expected_token):
        torch.testing.assert_close(placed[0, frame], phoneme_states[token])
    # Aligned RoPE: each phoneme at the centre of its span (the empty one at its boundary).
    positions = condition.rope_positions(frame_mask)[0, : condition.hidden_states.shape[1]]
    phoneme_positions = positions[condition.token_types[0] == TEXT_TOKEN_PHONEME]
    torch.testing.assert_close(phoneme_positions, torch.tensor([1.5, 3.0, 5.0, 7.5]))


def test_a_durations_model_refuses_to_guess_where_phonemes_go():
    model = make_model(**DURATIONS)
    inputs = make_inputs(batch_size=1)
    with pytest.raises(ValueError, match="phoneme_durations"):
        model(**inputs)


def test_token_durations_are_batch_invariant_and_follow_the_instruction():
    model = make_model(**DURATIONS)
    a = make_inputs(batch_size=1, instruction_len=3, phoneme_len=5, seed=1)
    b = make_inputs(batch_size=1, instruction_len=6, phoneme_len=8, seed=2)

    def pad(tensor, length, value=0):
        return torch.nn.functional.pad(
            tensor, (0, 0) * (tensor.ndim - 2) + (0, length - tensor.shape[1]), value=value
        )

    batch = {
        "encoder_hidden_states": torch.cat([pad(a["encoder_hidden_states"], 6), b["encoder_hidden_states"]]),
        "encoder_attention_mask": torch.cat(
            [pad(a["encoder_attention_mask"], 6, False), b["encoder_attention_mask"]]
        ),
        "phoneme_ids": torch.cat([pad(a["phoneme_ids"], 8, 3), b["phoneme_ids"]]),
        "phoneme_attention_mask": torch.cat(
            [pad(a["phoneme_attention_mask"], 8, False), b["phoneme_attention_mask"]]
        ),
    }
    keys = ("encoder_hidden_states", "encoder_attention_mask", "phoneme_ids", "phoneme_attention_mask")
    with torch.no_grad():
        alone = model.predict_token_durations(model.encode_text_condition(*(a[k] for k in keys)), 5)
        batched = model.predict_token_durations(model.encode_text_condition(*(batch[k] for k in keys)), 8)
        other_instruction = model.predict_token_durations(
            model.encode_text_condition(b["encoder_hidden_states"][:, :3], None, a["phoneme_ids"], None), 5
        )
    torch.testing.assert_close(batched[:1, :5], alone, rtol=0, atol=1e-5)
    assert batched[0, 5:].eq(0).all()
    assert not torch.allclose(other_instruction, alone)


def test_the_pooled_instruction_reaches_the_timestep_embedding():
    model = make_model(**DURATIONS)
    inputs = make_inputs(batch_size=1, durations=True)
    other = dict(inputs, encoder_hidden_states=inputs["encoder_hidden_states"] + 1.0)
    with torch.no_grad():
        condition = model.encode_text_condition(
            inputs["encoder_hidden_states"], None, inputs["phoneme_ids"], None, inputs["phoneme_durations"]
        )
        changed = model.encode_text_condition(
            other["encoder_hidden_states"], None, other["phoneme_ids"], None, other["phoneme_durations"]
        )
        dropped = model.encode_text_condition(
            inputs["encoder_hidden_states"], torch.zeros(1, 5, dtype=torch.bool), inputs["phoneme_ids"], None
        )
        zero = model.encode_text_condition(
            torch.zeros(1, 2, TINY["instruction_dim"]), torch.zeros(1, 2).bool()
        )
    assert condition.pooled_instruction.shape == (1, TINY["hidden_size"])
    assert not torch.allclose(condition.pooled_instruction, changed.pooled_instruction)
    # A dropped instruction pools to zero whatever its hidden states: the guidance branch's condition.
    torch.testing.assert_close(dropped.pooled_instruction, zero.pooled_instruction)


def test_token_duration_loss_is_zero_for_exact_predictions_and_ignores_masked_tokens():
    target = torch.tensor([[3, 0, 5, 9], [2, 2, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    exact = torch.log1p(target.float())
    assert token_duration_loss(exact, target, mask) == 0
    wrong_padding = exact.clone()
    wrong_padding[1, 2:] = 50.0
    assert token_duration_loss(wrong_padding, target, mask) == 0
    off = exact + 0.5
    torch.testing.assert_close(token_duration_loss(off, target, mask), torch.tensor(0.25))
    samples = torch.tensor([True, False])
    wrong_second = exact.clone()
    wrong_second[1] += 3.0
    assert token_duration_loss(wrong_second, target, mask, samples) == 0


def test_fit_durations_sums_exactly_and_keeps_proportions():
    durations = torch.tensor([[2.0, 0.0, 4.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[True] * 4, [True, True, True, False], [True, True, True, False]])
    fitted = fit_durations(durations, mask, torch.tensor([16, 7, 10]))
    assert fitted.sum(dim=1).tolist() == [16, 7, 10]
    assert fitted[0].tolist() == [4, 0, 8, 4]
    assert fitted[1, 3] == 0 and fitted[1, :3].min() >= 2  # all zero: spread evenly over valid phonemes
    assert fitted[2, 3] == 0 and (fitted >= 0).all()


@pytest.fixture(scope="module")
def pipe():
    return InstructAudioPipeline(**get_dummy_components(**DURATIONS))


def test_pipeline_predicts_durations_and_reports_them(pipe):
    inputs = get_dummy_inputs()
    inputs.pop("audio_length_in_s")
    output = pipe(**inputs)
    tokens = pipe.processor.phonemize(inputs["text"])
    durations = output.phoneme_durations_in_s[0]
    assert len(durations) == len(tokens)
    assert len(output.audios[0]) == pytest.approx(durations.sum() * pipe.sampling_rate, abs=1)
    predicted = pipe.predict_audio_length_in_s(inputs["instruction"], inputs["text"])[0]
    assert durations.sum() == pytest.approx(predicted, abs=1e-6)


def test_pipeline_fits_durations_to_a_requested_length(pipe):
    inputs = get_dummy_inputs()
    inputs["audio_length_in_s"] = 0.5
    output = pipe(**inputs)
    frames = round(0.5 * pipe.vae.latent_frame_rate)
    assert output.phoneme_durations_in_s[0].sum() == pytest.approx(frames / pipe.vae.latent_frame_rate)
    assert len(output.audios[0]) == frames * pipe.samples_per_latent_frame


def test_pipeline_batch_matches_single_items(pipe):
    prompts = [("A man speaks.", "Hello there, my friend."), ("Calm piano music.", "")]
    singles = []
    for instruction, text in prompts:
        generator = torch.Generator().manual_seed(5)
        singles.append(pipe(instruction=instruction, text=text, num_inference_steps=2, generator=generator))
    generators = [torch.Generator().manual_seed(5) for _ in prompts]
    batched = pipe(
        instruction=[p[0] for p in prompts],
        text=[p[1] for p in prompts],
        num_inference_steps=2,
        generator=generators,
    )
    for index, single in enumerate(singles):
        np.testing.assert_allclose(batched.audios[index], single.audios[0], atol=1e-4)
        np.testing.assert_array_equal(batched.phoneme_durations_in_s[index], single.phoneme_durations_in_s[0])


def test_other_models_report_no_durations():
    pipe = InstructAudioPipeline(**get_dummy_components())
    assert pipe(**get_dummy_inputs()).phoneme_durations_in_s is None


def test_given_durations_replace_the_predicted_ones_and_round_trip(pipe):
    inputs = get_dummy_inputs()
    inputs.pop("audio_length_in_s")
    inputs.pop("generator", None)
    first = pipe(**inputs, generator=torch.Generator().manual_seed(3))
    edited = first.phoneme_durations_in_s[0].copy()
    edited[-1] += 10 / pipe.vae.latent_frame_rate  # hold the last token ten frames longer
    again = pipe(
        **inputs, phoneme_durations_in_s=[edited.tolist()], generator=torch.Generator().manual_seed(3)
    )
    np.testing.assert_allclose(again.phoneme_durations_in_s[0], edited, atol=1e-6)
    assert len(again.audios[0]) == len(first.audios[0]) + 10 * pipe.samples_per_latent_frame
    # With a length given, the durations keep their proportions and fill it.
    fitted = pipe(**inputs, phoneme_durations_in_s=[edited], audio_length_in_s=0.5)
    frames = round(0.5 * pipe.vae.latent_frame_rate)
    assert round(fitted.phoneme_durations_in_s[0].sum() * pipe.vae.latent_frame_rate) == frames


@pytest.mark.parametrize(
    "durations, error, message",
    [
        (
            [[0.1, 0.2]],
            ValueError,
            r"phoneme_durations_in_s\[0\] has 2 values, but its text has \d+ phoneme tokens",
        ),
        ([[0.1], [0.2]], ValueError, "2 sequences in phoneme_durations_in_s for 1 instructions"),
        ([[0.1, -0.2]], ValueError, "finite seconds >= 0"),
        ([[0.0, 0.0]], ValueError, "add up to more than 0"),
        ([["0.1"]], TypeError, "flat sequence of seconds"),
        (0.5, TypeError, "one sequence of seconds per instruction"),
    ],
)
def test_bad_given_durations_are_refused_by_name(pipe, durations, error, message):
    inputs = get_dummy_inputs()
    with pytest.raises(error, match=message):
        pipe(**inputs, phoneme_durations_in_s=durations)


def test_given_durations_need_a_durations_model():
    pipe = InstructAudioPipeline(**get_dummy_components())
    with pytest.raises(ValueError, match="phoneme_alignment='durations'"):
        pipe(**get_dummy_inputs(), phoneme_durations_in_s=[[0.1, 0.2]])
