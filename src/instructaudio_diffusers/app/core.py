"""What the web demo does, without the web: loading, language detection, validation, generation, mel image.

Nothing here imports Gradio, so the tests exercise every rule the app enforces without a server or a
browser; `app.py` only wires these functions to widgets and turns their `ValueError`s into `gr.Error`s.
"""

from __future__ import annotations

import io
import math
import secrets
import time
import warnings
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import InstructAudioPipeline, InstructAudioProcessor
from ..audio.plot import figure_to_rgb, mel_figure
from ..pretrained import load_pipeline as load_named_pipeline
from ..processing.text_segmentation import (
    TextSegment,
    parse_markup,
    script_of,
    split_language_runs,
)
from ..processing.vocab import INSTRUMENTAL_TEXT, SPEAKER_TOKENS

TASKS = ("Speech", "Dialogue", "Music")
#: Default `--max_seconds`: long enough for a paragraph or a song section, short enough that one request
#: cannot hold a shared CPU for minutes.
DEFAULT_MAX_SECONDS = 30.0
#: Upper bound of the steps slider, enforced server-side too since any client can post to the API.
MAX_INFERENCE_STEPS = 100
#: Guidance below 1 would not weaken the instruction, it would turn guidance off; the pipeline refuses it.
MIN_GUIDANCE_SCALE = 1.0
MAX_GUIDANCE_SCALE = 10.0
#: Longest instruction accepted: several times what any description needs, and far below what would keep
#: the instruction tokenizer busy (encoders truncate at a few hundred tokens anyway).
MAX_INSTRUCTION_CHARACTERS = 2000
MAX_SEED = 2**32 - 1
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}

#: Clickable examples, `(task, instruction, text)`: English (with a pronunciation override), Chinese (with a
#: date to normalise and an override), mixed text, a dialogue, an instrumental and a song with lyrics.
EXAMPLES: list[tuple[str, str, str]] = [
    (
        "Speech",
        "A young woman speaks cheerfully at a brisk pace.",
        "Hello there! Yesterday I read{R EH1 D} a wonderful book about the sea.",
    ),
    (
        "Speech",
        "A middle-aged man speaks slowly in a calm, warm voice.",
        "今天是2025年5月1日，我在银行{hang2}门口等你。",
    ),
    (
        "Speech",
        "A young man speaks quickly and excitedly.",
        "我们明天用Python写一个demo, OK? Let's start at 9 am!",
    ),
    (
        "Dialogue",
        "Speaker 0 is a cheerful young woman; speaker 1 is a calm middle-aged man.",
        "[S0] 你好呀，今天天气怎么样？ [S1] Hello! What a sunny day! [S0] 那我们去公园吧。",
    ),
    ("Music", "Upbeat electronic dance track at 128 BPM with a bright synth lead, happy atmosphere.", ""),
    (
        "Music",
        "A gentle acoustic pop song with a soft female voice and warm guitar.",
        "[verse] Lights on the city tonight [chorus] We keep dancing till the morning light",
    ),
]


def load_pipeline(model: str | None, device: str | None = None) -> tuple[InstructAudioPipeline, bool]:
    """Load the pipeline the app serves.

    Args:
        model: A pipeline folder, a Hub repo id, `"tiny-random"` for the seeded toy pipeline of the tests, or
            `None` for the shipped demo model.
        device: Where to run (`"cpu"`, `"cuda"`, ...); default: CUDA when available.

    Returns:
        `(pipeline, is_random)`; `is_random` is True for `tiny-random`, whose output is noise.

    Raises:
        ModelNotFoundError: `model` is `None` and the demo model is missing. There is deliberately no
            fallback to random weights: a demo that silently serves noise looks like a broken model.
        OSError, ValueError: the folder or repo holds no loadable pipeline.
    """
    pipe, is_random = load_named_pipeline(model)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe.set_progress_bar_config(disable=True)  # progress goes to the page, not the server's terminal
    return pipe.to(device), is_random


def length_cap_in_s(pipe: InstructAudioPipeline, max_seconds: float) -> float:
    """Longest clip the app generates: `--max_seconds`, or less when the model cannot place that much."""
    return min(float(max_seconds), pipe.max_audio_length_in_s)


# ----------------------------------------------------------------------------------- language


def detect_languages(text: str, processor: InstructAudioProcessor) -> list[str]:
    """Languages (`"en"`, `"zh"`) the processor will read `text` in, in order of first appearance.

    Uses the processor's own markup parsing and language-run splitting, so tags and `{...}` overrides do not
    count and digits join the language they are read in. While the user is still typing the markup may be
    malformed (an unclosed `[`); then the letters' scripts alone decide, since this is only a display.
    """
    try:
        segments = [
            item for item in parse_markup(text, processor.num_speakers) if isinstance(item, TextSegment)
        ]
        runs = [
            run for segment in segments for run in split_language_runs(segment, processor.default_language)
        ]
        languages = [run.language for run in runs if run.text.strip()]
    except ValueError:
        languages = [language for language in map(script_of, text) if language is not None]
    return list(dict.fromkeys(languages))


def language_label(text, processor: InstructAudioProcessor) -> str:
    """The "Detected language" label for whatever a client posts as the text box's value.

    It runs on every keystroke, off the queue, so it must stay cheap for any input: a text longer than the
    processor accepts (which generation would refuse) is answered from its length alone, since detecting
    the languages of a few million characters takes seconds of CPU; anything that is not text reads as empty.
    """
    text = text if isinstance(text, str) else ""
    if len(text) > processor.max_text_characters:
        return f"Too long: {len(text)} characters (at most {processor.max_text_characters})"
    return describe_languages(detect_languages(text, processor))


def describe_languages(languages: list[str]) -> str:
    """A label for `detect_languages`' result: "English", "Chinese", "Mixed: Chinese + English"."""
    if not languages:
        return "None: no text (instrumental music)"
    names = [LANGUAGE_NAMES.get(language, language) for language in languages]
    return names[0] if len(names) == 1 else "Mixed: " + " + ".join(names)


# ----------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class GenerationRequest:
    """One generation as the user asked for it; `audio_length_in_s=None` means automatic."""

    task: str
    instruction: str
    text: str
    audio_length_in_s: float | None
    num_inference_steps: int
    guidance_scale: float
    seed: int


def _is_number(value) -> bool:
    """A finite real number as JSON delivers it (int or float), not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole_number(value, low: int, high: int) -> bool:
    return _is_number(value) and value == int(value) and low <= value <= high


def _text_field(value, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"The {name} must be text, got {type(value).__name__}.")
    return value.strip()


def requested_length(automatic_length, audio_length_in_s):
    """The form's duration: `None` for automatic, else the slider's value (checked by `validate_request`).

    Raises:
        ValueError: the checkbox is not a boolean, or it is off and no duration was given, which would
            otherwise silently become an automatic length.
    """
    if not isinstance(automatic_length, bool):
        raise ValueError(f"'Automatic duration' must be true or false, got {automatic_length!r}.")
    if automatic_length:
        return None
    if audio_length_in_s is None:
        raise ValueError("The duration is empty: give one in seconds, or tick 'Automatic duration'.")
    return audio_length_in_s


def validate_request(
    task: str,
    instruction: str | None,
    text: str | None,
    audio_length_in_s: float | None,
    num_inference_steps: float | int,
    guidance_scale: float,
    seed: float | int | None,
    randomize_seed: bool,
    max_length_in_s: float,
) -> GenerationRequest:
    """Check the form's values against what the task needs and the server allows.

    The values are taken as any client may post them (JSON: numbers, strings, booleans, null, in any
    slot), so every type is checked here rather than trusted to the widgets. The text itself (markup,
    overrides, length) is checked later by the processor, whose messages already name the problem and its
    position; this function only adds what the processor cannot know: the task, and the server's limits.

    Returns:
        The request with stripped strings and, when `randomize_seed`, a fresh seed from the OS (never from
        the global RNG, which other requests share).

    Raises:
        ValueError: with a message meant for the user.
    """
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.")
    instruction, text = _text_field(instruction, "instruction"), _text_field(text, "text")
    if not instruction:
        raise ValueError("The instruction is empty: describe the voice or the music to generate.")
    if len(instruction) > MAX_INSTRUCTION_CHARACTERS:
        raise ValueError(
            f"The instruction is {len(instruction)} characters long; at most {MAX_INSTRUCTION_CHARACTERS} "
            "are accepted. Describe the voice or the music in a few sentences."
        )
    if task == "Speech" and not text:
        raise ValueError("Speech needs a text to speak. For instrumental music, choose the Music task.")
    if task == "Dialogue" and not text:
        raise ValueError("A dialogue needs a text with speaker tags, e.g. [S0] Hi! [S1] Hello.")
    if audio_length_in_s is not None and not (
        _is_number(audio_length_in_s) and 0 < audio_length_in_s <= max_length_in_s
    ):
        raise ValueError(
            f"Duration must be a number of seconds between 0 and {max_length_in_s:.1f} here, got "
            f"{audio_length_in_s!r}; or tick 'Automatic duration'."
        )
    if not _is_whole_number(num_inference_steps, 1, MAX_INFERENCE_STEPS):
        raise ValueError(
            f"Steps must be a whole number from 1 to {MAX_INFERENCE_STEPS}, got {num_inference_steps!r}."
        )
    if not (_is_number(guidance_scale) and MIN_GUIDANCE_SCALE <= guidance_scale <= MAX_GUIDANCE_SCALE):
        raise ValueError(
            f"Guidance must be a number from {MIN_GUIDANCE_SCALE:g} (off) to {MAX_GUIDANCE_SCALE:g}, got "
            f"{guidance_scale!r}."
        )
    if not isinstance(randomize_seed, bool):
        raise ValueError(f"'Randomize seed' must be true or false, got {randomize_seed!r}.")
    if randomize_seed:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif not _is_whole_number(seed, 0, MAX_SEED):
        raise ValueError(
            f"Seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}; or tick 'Randomize seed'."
        )
    return GenerationRequest(
        task=task,
        instruction=instruction,
        text=text,
        audio_length_in_s=None if audio_length_in_s is None else float(audio_length_in_s),
        num_inference_steps=int(num_inference_steps),
        guidance_scale=float(guidance_scale),
        seed=int(seed),
    )


def phonemize(processor: InstructAudioProcessor, task: str, text: str) -> tuple[list[str], list[str]]:
    """The phoneme tokens the pipeline will condition on, and the processor's warnings as messages.

    Empty text is read as instrumental music, as the pipeline reads it (`INSTRUMENTAL_TEXT`). Warnings
    (dropped emoji, tokens outside the vocabulary) are collected rather than logged, so the user sees what
    was left out.

    Raises:
        ValueError: the processor's own message for malformed text, or a dialogue without speaker tags.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        tokens = processor.phonemize(text or INSTRUMENTAL_TEXT)
    if task == "Dialogue" and not any(token in SPEAKER_TOKENS for token in tokens):
        raise ValueError(
            "A dialogue needs speaker tags: start each turn with [S0] or [S1], e.g. [S0] Hi! [S1] Hello."
        )
    return tokens, [str(warning.message) for warning in caught]


# ----------------------------------------------------------------------------------- generation


@dataclass
class GenerationResult:
    """What one generation produced and how, for the page and for the tests.

    `audio` is 1-D float32 at `sampling_rate`; `length_source` says where its length came from.
    """

    audio: np.ndarray
    sampling_rate: int
    phonemes: list[str]
    languages: list[str]
    length_source: str
    elapsed_s: float
    seed: int
    warnings: list[str] = field(default_factory=list)

    @property
    def audio_length_in_s(self) -> float:
        return len(self.audio) / self.sampling_rate

    def summary(self) -> str:
        """One line for the page: length, time taken, real-time factor, seed."""
        seconds = self.audio_length_in_s
        return (
            f"{seconds:.2f} s of audio ({self.length_source}) generated in {self.elapsed_s:.2f} s "
            f"(real-time factor {self.elapsed_s / seconds:.2f}) at {self.sampling_rate} Hz, seed {self.seed}."
        )


def length_source(
    pipe: InstructAudioPipeline, request: GenerationRequest, num_samples: int, max_length_in_s: float
) -> str:
    """Where a result's length came from: requested, predicted or the instrumental default, and whether the
    pipeline capped it at `max_length_in_s` (it then fills exactly the cap's latent frames)."""
    if request.audio_length_in_s is not None:
        return "requested"
    source = "predicted" if request.text else "instrumental default"
    if num_samples // pipe.samples_per_latent_frame >= pipe.length_cap_in_frames(max_length_in_s):
        source += f", capped at {max_length_in_s:.1f} s"
    return source


def generate_stream(
    pipe: InstructAudioPipeline,
    request: GenerationRequest,
    max_length_in_s: float,
    on_step: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray | GenerationResult]:
    """Run one validated request through the pipeline, yielding its audio as the vocoder produces it.

    Yields the waveform's chunks (1-D float32 at `pipe.sampling_rate`, from `pipe.stream`: a short one first, so
    playback can start early), then the `GenerationResult`, whose `audio` is the chunks concatenated. The text
    is read before the pipeline runs, so input the processor refuses raises before any chunk.

    Args:
        pipe: The loaded pipeline.
        request: From `validate_request`.
        max_length_in_s: Cap on the length, automatic lengths included (see `length_cap_in_s`).
        on_step: Called as `(steps_done, total_steps)` after each denoising step, for a progress bar.

    Raises:
        ValueError: the processor's or the pipeline's message for input they refuse.
    """
    start = time.perf_counter()
    phonemes, notes = phonemize(pipe.processor, request.task, request.text)

    def callback(pipeline: InstructAudioPipeline, step: int, timestep: torch.Tensor, tensors: dict) -> dict:
        if on_step is not None:
            on_step(step + 1, pipeline.num_timesteps)
        return tensors

    chunks = []
    for chunk in pipe.stream(
        instruction=request.instruction,
        text=request.text,
        audio_length_in_s=request.audio_length_in_s,
        max_audio_length_in_s=max_length_in_s,  # caps automatic lengths in the same pass
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        generator=torch.Generator().manual_seed(request.seed),
        callback_on_step_end=callback,
    ):
        chunks.append(np.asarray(chunk, dtype=np.float32))
        yield chunks[-1]
    audio = np.concatenate(chunks)
    yield GenerationResult(
        audio=audio,
        sampling_rate=pipe.sampling_rate,
        phonemes=phonemes,
        languages=detect_languages(request.text, pipe.processor),
        length_source=length_source(pipe, request, len(audio), max_length_in_s),
        elapsed_s=time.perf_counter() - start,
        seed=request.seed,
        warnings=notes,
    )


def generate(
    pipe: InstructAudioPipeline,
    request: GenerationRequest,
    max_length_in_s: float,
    on_step: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """Run one validated request through the pipeline: `generate_stream`'s result, without the chunks.

    Raises:
        ValueError: the processor's or the pipeline's message for input they refuse.
    """
    *_, result = generate_stream(pipe, request, max_length_in_s, on_step)
    return result


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float waveform in [-1, 1] -> 16-bit PCM samples (clipped), as the page's WAV player gets them."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def wav_bytes(audio: np.ndarray, sampling_rate: int) -> bytes:
    """A mono 16-bit WAV file, in memory, of a float waveform in [-1, 1] (clipped): one chunk for the page's
    streaming player. Converted here, with `to_int16`, because Gradio would scale each float chunk by its own
    peak, making the loudness jump from one chunk to the next."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sampling_rate)
        writer.writeframes(to_int16(audio).tobytes())
    return buffer.getvalue()


# ----------------------------------------------------------------------------------- mel image


def mel_of(pipe: InstructAudioPipeline, audio: np.ndarray) -> np.ndarray:
    """Log-mel `(n_mels, frames)` of a waveform through the VAE's own mel front end: what the model sees."""
    mel_spectrogram = pipe.vae.mel_spectrogram()
    with torch.no_grad():
        mel = mel_spectrogram(torch.from_numpy(np.asarray(audio, dtype=np.float32)).to(pipe.vae.device))
    return mel[0].cpu().numpy()


def plot_mel(log_mel: np.ndarray, sampling_rate: int, hop_length: int) -> np.ndarray:
    """Render a log-mel `(n_mels, frames)` as an RGB image `(height, width, 3)` uint8, time in seconds."""
    try:
        return figure_to_rgb(mel_figure([log_mel], sampling_rate, hop_length))
    except ImportError as err:
        raise ImportError('Plotting the mel-spectrogram needs matplotlib: pip install -e ".[app]"') from err


def mel_image(pipe: InstructAudioPipeline, audio: np.ndarray) -> np.ndarray:
    """The page's mel-spectrogram picture of generated audio, `(height, width, 3)` uint8."""
    config = pipe.vae.config
    return plot_mel(mel_of(pipe, audio), config.sampling_rate, config.hop_length)
