"""The web demo's logic without a browser: loading, language detection, validation, generation, mel image."""

import io
import math
import wave

import numpy as np
import pytest
import torch

from instructaudio_diffusers import pretrained
from instructaudio_diffusers.app import core as app_core
from instructaudio_diffusers.app.core import (
    EXAMPLES,
    MAX_SEED,
    GenerationResult,
    describe_languages,
    detect_languages,
    generate,
    generate_stream,
    length_cap_in_s,
    load_pipeline,
    mel_image,
    phonemize,
    plot_mel,
    to_int16,
    validate_request,
    wav_bytes,
)
from instructaudio_diffusers.pretrained import ModelNotFoundError


@pytest.fixture(scope="module")
def pipe():
    pipe, is_random = load_pipeline("tiny-random", device="cpu")
    assert is_random
    return pipe


def request_for(task="Speech", instruction="A calm man speaks.", text="Hello.", **overrides):
    values = dict(
        audio_length_in_s=0.2,
        num_inference_steps=2,
        guidance_scale=2.0,
        seed=3,
        randomize_seed=False,
        max_length_in_s=2.0,
    )
    values.update(overrides)
    return validate_request(task, instruction, text, **values)


# ----------------------------------------------------------------------------------- loading


def test_missing_default_model_names_the_flag_instead_of_falling_back(monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", str(tmp_path / "instructaudio-demo"))
    with pytest.raises(ModelNotFoundError, match="--model"):
        load_pipeline(None)


def test_app_main_exits_with_a_message_when_the_demo_model_is_missing(monkeypatch, tmp_path, capsys):
    from instructaudio_diffusers.app import ui as app

    monkeypatch.setattr(pretrained, "DEFAULT_MODEL", str(tmp_path / "instructaudio-demo"))
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert "demo model is not at" in err and "--model" in err and "Traceback" not in err


@pytest.mark.parametrize("flags", [["--max_seconds", "0"], ["--max_queue", "0"]])
def test_app_main_refuses_non_positive_limits(flags, capsys):
    from instructaudio_diffusers.app import ui as app

    assert app.main(["--model", "tiny-random", *flags]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_app_main_names_an_unloadable_model(tmp_path, capsys):
    from instructaudio_diffusers.app import ui as app

    assert app.main(["--model", str(tmp_path)]) == 2
    assert "cannot load a pipeline" in capsys.readouterr().err


def test_length_cap_is_the_flag_or_the_model_limit(pipe):
    assert length_cap_in_s(pipe, 1.0) == 1.0
    assert length_cap_in_s(pipe, 1000.0) == pipe.max_audio_length_in_s


# ----------------------------------------------------------------------------------- language


@pytest.mark.parametrize(
    "text, languages",
    [
        ("Hello there, how are you?", ["en"]),
        ("今天天气很好。", ["zh"]),
        ("我们用Python写代码", ["zh", "en"]),
        ("[S0] 你好 [S1] Hello!", ["zh", "en"]),
        ("银行{hang2}", ["zh"]),  # the override's Latin letters are markup, not English
        ("在2025年", ["zh"]),  # digits join the language they are read in
        ("12345", ["en"]),  # no letters at all: the processor's default language
        ("", []),
        ("[S0 hello 你好", ["en", "zh"]),  # unclosed tag while typing: scripts alone decide
    ],
)
def test_detect_languages_follows_the_processor(pipe, text, languages):
    assert detect_languages(text, pipe.processor) == languages


def test_describe_languages():
    assert describe_languages(["en"]) == "English"
    assert describe_languages(["zh", "en"]) == "Mixed: Chinese + English"
    assert "instrumental" in describe_languages([])


# ----------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "task, instruction, text, overrides, message",
    [
        ("Speech", "   ", "Hello.", {}, "instruction is empty"),
        ("Speech", "A calm man.", "  ", {}, "Speech needs a text"),
        ("Dialogue", "Two friends.", "", {}, "speaker tags"),
        ("Singing", "A calm man.", "Hello.", {}, "Unknown task"),
        ("Speech", "A calm man.", "Hello.", {"audio_length_in_s": 2.5}, "between 0 and 2.0 here"),
        ("Speech", "A calm man.", "Hello.", {"audio_length_in_s": 0.0}, "Duration"),
        ("Speech", "A calm man.", "Hello.", {"audio_length_in_s": math.nan}, "Duration"),
        ("Speech", "A calm man.", "Hello.", {"num_inference_steps": 0}, "Steps"),
        ("Speech", "A calm man.", "Hello.", {"num_inference_steps": 2.5}, "Steps"),
        ("Speech", "A calm man.", "Hello.", {"num_inference_steps": 1000}, "Steps"),
        ("Speech", "A calm man.", "Hello.", {"guidance_scale": math.inf}, "Guidance"),
        ("Speech", "A calm man.", "Hello.", {"seed": -1}, "Seed"),
        ("Speech", "A calm man.", "Hello.", {"seed": math.nan}, "Seed"),
        ("Speech", "A calm man.", "Hello.", {"seed": None}, "Seed"),
        # what any client may post in place of the widgets' values
        (
            "Speech",
            "A calm man.",
            "Hello.",
            {"num_inference_steps": "4"},
            "Steps must be a whole number .* got '4'",
        ),
        ("Speech", "A calm man.", "Hello.", {"num_inference_steps": None}, "Steps .* got None"),
        ("Speech", "A calm man.", "Hello.", {"num_inference_steps": True}, "Steps .* got True"),
        (
            "Speech",
            "A calm man.",
            "Hello.",
            {"guidance_scale": None},
            "Guidance must be a number .* got None",
        ),
        ("Speech", "A calm man.", "Hello.", {"guidance_scale": "2"}, "Guidance .* got '2'"),
        (
            "Speech",
            "A calm man.",
            "Hello.",
            {"guidance_scale": 0.0},
            r"Guidance must be a number from 1 \(off\)",
        ),
        ("Speech", "A calm man.", "Hello.", {"guidance_scale": math.nan}, "Guidance"),
        (
            "Speech",
            "A calm man.",
            "Hello.",
            {"audio_length_in_s": "1"},
            "Duration must be a number .* got '1'",
        ),
        ("Speech", "A calm man.", "Hello.", {"audio_length_in_s": True}, "Duration .* got True"),
        ("Speech", "A calm man.", "Hello.", {"seed": "7"}, "Seed .* got '7'"),
        (
            "Speech",
            "A calm man.",
            "Hello.",
            {"randomize_seed": "yes"},
            "'Randomize seed' must be true or false",
        ),
        ("Speech", 5, "Hello.", {}, "The instruction must be text, got int"),
        ("Speech", "A calm man.", ["Hello."], {}, "The text must be text, got list"),
        ("Speech", "x" * 2001, "Hello.", {}, "instruction is 2001 characters long; at most 2000"),
        (None, "A calm man.", "Hello.", {}, "Unknown task None"),
        (["Speech"], "A calm man.", "Hello.", {}, "Unknown task"),
    ],
)
def test_validate_request_refuses_with_a_readable_message(task, instruction, text, overrides, message):
    with pytest.raises(ValueError, match=message):
        request_for(task, instruction, text, **overrides)


def test_requested_length_refuses_what_would_silently_become_automatic():
    assert app_core.requested_length(True, None) is None
    assert app_core.requested_length(True, "ignored") is None
    assert app_core.requested_length(False, 1.5) == 1.5
    with pytest.raises(ValueError, match="The duration is empty"):
        app_core.requested_length(False, None)
    with pytest.raises(ValueError, match="'Automatic duration' must be true or false, got 'no'"):
        app_core.requested_length("no", 1.5)


def test_language_label_stays_cheap_for_any_value(pipe):
    import time

    assert app_core.language_label("Hello 你好", pipe.processor) == "Mixed: English + Chinese"
    assert app_core.language_label(None, pipe.processor) == describe_languages([])
    assert app_core.language_label(12, pipe.processor) == describe_languages([])
    start = time.perf_counter()
    label = app_core.language_label("Hello 你好 " * 500_000, pipe.processor)  # 4.5 million characters
    assert label == f"Too long: 4500000 characters (at most {pipe.processor.max_text_characters})"
    assert time.perf_counter() - start < 0.5  # answered from the length (detection would take seconds)


def test_validate_request_normalises_and_randomizes():
    request = request_for(
        "Music", "  Calm piano.  ", "", audio_length_in_s=None, seed=None, randomize_seed=True
    )
    assert request.instruction == "Calm piano." and request.text == "" and request.audio_length_in_s is None
    assert isinstance(request.seed, int) and 0 <= request.seed <= MAX_SEED
    assert request_for(seed=7.0).seed == 7


def test_phonemize_passes_the_processors_errors_and_warnings(pipe):
    with pytest.raises(ValueError, match=r"Unknown speaker tag '\[S9\]' at character 0"):
        phonemize(pipe.processor, "Speech", "[S9] hello")
    with pytest.raises(ValueError, match="speaker tags"):
        phonemize(pipe.processor, "Dialogue", "No tags here.")
    tokens, notes = phonemize(pipe.processor, "Speech", "Hello 😀")
    assert tokens[:2] == ["<en>", "HH"] and any("😀" in note for note in notes)
    assert phonemize(pipe.processor, "Music", "") == (["[inst]"], [])


def test_examples_cover_every_task_and_language_and_are_valid(pipe):
    tasks, languages = set(), set()
    for task, instruction, text in EXAMPLES:
        request = request_for(task, instruction, text, audio_length_in_s=None)
        phonemize(pipe.processor, request.task, request.text)
        tasks.add(task)
        languages.add(describe_languages(detect_languages(text, pipe.processor)).split(":")[0])
    assert tasks == {"Speech", "Dialogue", "Music"}
    assert {"English", "Chinese", "Mixed"} <= languages
    assert sum(task == "Music" for task, _, _ in EXAMPLES) == 2


# ----------------------------------------------------------------------------------- generation


def test_generate_gives_the_requested_length_and_reports_progress(pipe):
    steps = []
    result = generate(
        pipe, request_for(text="Hello 你好"), 2.0, on_step=lambda done, total: steps.append((done, total))
    )
    assert result.audio.dtype == np.float32 and result.audio.shape == (1600,) and result.sampling_rate == 8000
    assert steps == [(1, 2), (2, 2)]
    assert result.phonemes[0] == "<en>" and "<zh>" in result.phonemes and result.languages == ["en", "zh"]
    assert (
        result.summary().startswith("0.20 s of audio (requested) generated in")
        and "seed 3" in result.summary()
    )
    again = generate(pipe, request_for(text="Hello 你好"), 2.0)
    np.testing.assert_array_equal(result.audio, again.audio)


def test_one_request_runs_the_encoders_once(pipe, monkeypatch):
    # The cap on automatic lengths travels into the call, so no separate prediction pass encodes the
    # instruction and the text again.
    calls = []
    for name in ("encode_instruction", "encode_text"):
        original = getattr(pipe, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(pipe, name, counted)
    result = generate(pipe, request_for(text="Hello there, how are you?", audio_length_in_s=None), 2.0)
    assert sorted(calls) == ["encode_instruction", "encode_text"]
    assert result.length_source == "predicted"


def test_automatic_length_is_capped_by_max_seconds(pipe):
    # Instrumental music defaults to 10 s, far over this cap.
    result = generate(
        pipe, request_for("Music", "Calm piano.", "", audio_length_in_s=None, max_length_in_s=0.1), 0.1
    )
    assert result.audio_length_in_s == pytest.approx(0.1)
    assert result.length_source == "instrumental default, capped at 0.1 s"


def test_processor_errors_reach_the_caller_as_value_errors(pipe):
    with pytest.raises(ValueError, match="Unbalanced"):
        generate(pipe, request_for(text="Hello {world"), 2.0)


def test_generate_stream_yields_the_chunks_before_the_result_and_they_make_the_clip(pipe):
    request = request_for(audio_length_in_s=1.0)
    items = list(generate_stream(pipe, request, 2.0))
    *chunks, result = items
    assert isinstance(result, GenerationResult) and result.length_source == "requested"
    assert len(chunks) >= 3 and all(isinstance(chunk, np.ndarray) for chunk in chunks)
    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in chunks)
    assert len(chunks[0]) < len(chunks[1])  # a short first chunk, for early playback
    np.testing.assert_array_equal(np.concatenate(chunks), result.audio)
    whole = pipe(
        instruction=request.instruction,
        text=request.text,
        audio_length_in_s=1.0,
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        generator=torch.Generator().manual_seed(request.seed),
    ).audios[0]
    assert result.audio.shape == (8000,)
    np.testing.assert_allclose(result.audio, whole, atol=1e-5)


def test_generate_stream_refuses_before_running_the_pipeline(pipe, monkeypatch):
    runs = []
    monkeypatch.setattr(pipe, "stream", lambda *args, **kwargs: runs.append(kwargs) or iter(()))
    stream = generate_stream(pipe, request_for(text="Hello {world"), 2.0)
    with pytest.raises(ValueError, match="Unbalanced"):
        next(stream)
    assert runs == []


def test_wav_bytes_are_the_int16_samples():
    audio = np.array([0.0, 0.5, -2.0], dtype=np.float32)
    with wave.open(io.BytesIO(wav_bytes(audio, 8000)), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 8000)
        samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    np.testing.assert_array_equal(samples, to_int16(audio))


def test_to_int16_clips():
    np.testing.assert_array_equal(
        to_int16(np.array([-2.0, -1.0, 0.0, 0.5, 3.0])), [-32767, -32767, 0, 16384, 32767]
    )


def test_mel_image_is_an_rgb_picture(pipe):
    audio = generate(pipe, request_for(), 2.0).audio
    image = mel_image(pipe, audio)
    assert (
        image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.shape[1] > image.shape[0]
    )
    assert image.std() > 0  # something was drawn
    assert plot_mel(np.zeros((16, 10)), 8000, 16).shape == image.shape


# ----------------------------------------------------------------------------------- the Gradio app


def test_build_demo_queues_one_generation_at_a_time(pipe):
    pytest.importorskip("gradio", reason='the web demo needs the "app" extra')
    from instructaudio_diffusers.app import ui as app

    demo = app.build_demo(pipe, model_name="tiny-random", is_random=True, max_seconds=1.0, max_queue=3)
    # Gradio keeps these on its private queue object; checked here because nothing else would notice
    # the limit going missing until two users share a machine.
    assert demo._queue.default_concurrency_limit == 1 and demo._queue.max_size == 3
    assert demo.api_open is False  # queued events have no REST route around the queue
    config = str(demo.config)
    assert "random-weights-banner" in config and "clips up to 1.0 s" in config


def generate_handler(demo):
    """The function behind the `/generate` endpoint, as Gradio calls it."""
    return next(fn for fn in demo.fns.values() if fn.api_name == "generate").fn


def wav_samples(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data), "rb") as reader:
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")


def test_the_page_streams_the_chunks_then_shows_the_whole_clip(pipe):
    gr = pytest.importorskip("gradio", reason='the web demo needs the "app" extra')
    from instructaudio_diffusers.app import ui as app

    demo = app.build_demo(
        pipe, model_name="tiny-random", is_random=True, max_seconds=2.0, max_queue=3, stream_playback=True
    )
    on_generate = generate_handler(demo)
    with pytest.raises(gr.Error, match="Speech needs a text"):  # refused before any chunk
        next(on_generate("Speech", "A calm man.", "", False, 1.0, 2, 2.0, 3, False))

    *streamed, final = on_generate("Speech", "A calm man.", "Hello.", False, 1.0, 2, 2.0, 3, False)
    assert len(streamed) >= 3
    for update in streamed:  # only the streaming player changes while the chunks come
        assert update[:6] == (gr.skip(),) * 6 and isinstance(update[6], bytes)
    sampling_rate, audio = final[0]
    assert sampling_rate == 8000 and audio.dtype == np.int16 and audio.shape == (8000,)
    np.testing.assert_array_equal(np.concatenate([wav_samples(update[6]) for update in streamed]), audio)
    assert final[3].startswith("1.00 s of audio (requested)") and final[4] == 3
    assert final[6] == gr.skip()  # the player plays on; it is not reset at the end
