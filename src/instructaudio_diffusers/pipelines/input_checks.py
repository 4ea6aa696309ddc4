"""Argument checks of [`InstructAudioPipeline`]: each refusal names the argument and says what it needs.

Wrong types raise `TypeError`, wrong values `ValueError`, before any model runs. Numbers may be any real
(or integer) type, numpy's included; booleans are refused where a number is expected, since `True` passing
for 1 second or 1 step hides a mistake.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: Upper bound of `num_inference_steps`: far past where flow-matching samples stop changing, and low
#: enough that a typo (10**6) is an error rather than an hour-long hang.
MAX_INFERENCE_STEPS = 1000
#: Upper bound of `guidance_scale`. Useful values are 1-10; much larger ones push the latents out of
#: the range the VAE decodes (and, past ~1e37, to infinity in float32).
MAX_GUIDANCE_SCALE = 100.0
#: Most waveforms one call may generate (instructions x `num_waveforms_per_prompt`): far beyond any batch
#: that fits in memory at once, and low enough that a typo (10**9) is an error, not an allocation failure.
MAX_OUTPUTS_PER_CALL = 1000
#: `sway_sampling_coef` range in which the noise levels stay in (0, 1] and strictly decreasing for any
#: number of steps; outside it some steps go backwards or below zero.
SWAY_SAMPLING_RANGE = (-1.0, 1.0)
#: Scheduler settings that re-warp the sigmas given to `set_timesteps`, with the value that leaves them alone.
SIGMA_WARPING_SETTINGS = {
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "shift_terminal": None,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "invert_sigmas": False,
}


@dataclass(frozen=True)
class CallLimits:
    """What a pipeline's components accept: the bounds `check_call` checks the arguments against."""

    instruction_dim: int
    latent_channels: int
    min_audio_length_in_s: float
    max_audio_length_in_s: float
    output_types: tuple[str, ...]
    callback_tensor_inputs: tuple[str, ...]
    places_phonemes_by_durations: bool = False


def check_scheduler(scheduler) -> None:
    """Refuse a scheduler that would re-warp the sigmas the pipeline passes it: the schedule (and sway sampling)
    is computed by the pipeline, and a shifted or converted one would silently differ from what was asked."""
    warping = []
    for name, neutral in SIGMA_WARPING_SETTINGS.items():
        value = scheduler.config.get(name)
        # diffusers reads the flags and `shift_terminal` by truth value: None and 0 leave the sigmas alone.
        off = value == neutral if name == "shift" else not value
        if value is not None and not off:
            warping.append(f"{name}={value!r}")
    if warping:
        raise ValueError(
            f"the scheduler must not shift or convert sigmas ({', '.join(warping)}): use "
            "FlowMatchEulerDiscreteScheduler(shift=1.0) with its other sigma options at their defaults; the "
            "pipeline computes its own schedule."
        )


def check_call(
    limits: CallLimits,
    *,
    instructions: list[str] | None,
    texts: list[str],
    audio_length_in_s,
    max_audio_length_in_s,
    phoneme_durations_in_s,
    num_inference_steps,
    output_type,
    negative_instruction,
    instruction_embeds,
    instruction_attention_mask,
    callback_on_step_end_tensor_inputs,
    guidance_scale,
    num_waveforms_per_prompt,
    sway_sampling_coef,
    generator,
    latents,
    callback_on_step_end,
) -> None:
    """Every check of `InstructAudioPipeline.__call__`'s arguments (see `InstructAudioPipeline.check_inputs`)."""
    if instructions is not None and instruction_embeds is not None:
        raise ValueError("Give only one of `instruction` and `instruction_embeds`.")
    if instructions is None:
        if instruction_embeds is None:
            raise ValueError("Give either `instruction` or `instruction_embeds`.")
        check_instruction_embeds(instruction_embeds, instruction_attention_mask, limits.instruction_dim)
    check_prompts(instructions, texts)
    batch_size = len(instructions) if instructions is not None else instruction_embeds.shape[0]
    if len(texts) != batch_size:
        raise ValueError(
            f"Got {batch_size} instructions but {len(texts)} texts; give one text per instruction."
        )
    negatives = string_list(negative_instruction, "negative_instruction", "what to steer away from")
    if isinstance(negative_instruction, (list, tuple)) and len(negatives) != batch_size:
        raise ValueError(f"Got {len(negatives)} negative instructions for {batch_size} instructions.")
    check_integer(num_inference_steps, "num_inference_steps", 1, MAX_INFERENCE_STEPS)
    check_integer(num_waveforms_per_prompt, "num_waveforms_per_prompt", 1)
    check_guidance_scale(guidance_scale)
    check_sway_sampling_coef(sway_sampling_coef)
    if not isinstance(output_type, str) or output_type not in limits.output_types:
        raise ValueError(f"output_type must be one of {limits.output_types}, got {output_type!r}.")
    check_length_cap(max_audio_length_in_s, limits)
    if max_audio_length_in_s is None:
        max_s, max_reason = limits.max_audio_length_in_s, "this model's maximum"
    else:
        max_s, max_reason = float(max_audio_length_in_s), "the max_audio_length_in_s given"
    check_audio_lengths(audio_length_in_s, batch_size, limits.min_audio_length_in_s, max_s, max_reason)
    check_phoneme_durations(phoneme_durations_in_s, batch_size, limits.places_phonemes_by_durations)
    num_outputs = batch_size * num_waveforms_per_prompt
    if num_outputs > MAX_OUTPUTS_PER_CALL:
        raise ValueError(
            f"{batch_size} instructions x num_waveforms_per_prompt={num_waveforms_per_prompt} is {num_outputs} "
            f"waveforms; at most {MAX_OUTPUTS_PER_CALL} per call: split the job into several calls."
        )
    check_generator(generator, num_outputs)
    check_latents(latents, limits.latent_channels, num_outputs)
    check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, limits.callback_tensor_inputs)


def is_real(value) -> bool:
    """A real number of any type (int, float, numpy scalar), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value) -> bool:
    """An integer of any type (int, numpy integer), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _type_name(value) -> str:
    return "None" if value is None else type(value).__name__


def string_list(value, name: str, what: str) -> list[str] | None:
    """`None`, a string or a non-empty list/tuple of strings as a list (`None` stays `None`).

    Args:
        value: What the caller passed.
        name: The argument's name, for the messages.
        what: What one string holds, for the messages ("the voice or music to generate").
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a string or a list of strings ({what}), got {_type_name(value)}.")
    if not value:
        raise ValueError(f"{name} is an empty list: give one string per output ({what}).")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{index}] must be a string ({what}), got {_type_name(item)}: {item!r}.")
    return list(value)


def prompt_lists(
    instruction: str | list[str] | None, text: str | list[str] | None, instruction_embeds=None
) -> tuple[list[str] | None, list[str]]:
    """`instruction` and `text` as lists; a single text (or `None`: instrumental) goes with every instruction.

    Raises:
        TypeError: `instruction` or `text` (or one of their items) is not a string, naming which.
        ValueError: an empty list.
    """
    instructions = string_list(instruction, "instruction", "the voice or music to generate")
    if text is None or isinstance(text, str):
        if instructions is not None:
            batch_size = len(instructions)
        elif isinstance(instruction_embeds, torch.Tensor) and instruction_embeds.ndim > 0:
            batch_size = instruction_embeds.shape[0]
        else:
            batch_size = 1  # the pipeline's check_inputs names what is missing or wrong
        return instructions, [text or ""] * batch_size
    return instructions, string_list(text, "text", "the words to speak or sing, '' for instrumental music")


def check_prompts(instructions: list[str] | None, texts: list[str]) -> None:
    """Every instruction says something; texts may be empty (instrumental music)."""
    for index, instruction in enumerate(instructions or []):
        if not instruction.strip():
            raise ValueError(f"instruction[{index}] is empty: describe the voice or the music to generate.")


def check_integer(value, name: str, low: int, high: int | None = None) -> None:
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {_type_name(value)}: {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}.")


def check_guidance_scale(guidance_scale) -> None:
    if not is_real(guidance_scale):
        raise TypeError(
            f"guidance_scale must be a number, got {_type_name(guidance_scale)}: {guidance_scale!r}."
        )
    if not (math.isfinite(guidance_scale) and 1.0 <= guidance_scale <= MAX_GUIDANCE_SCALE):
        raise ValueError(
            f"guidance_scale must be from 1 (no guidance) to {MAX_GUIDANCE_SCALE:g}, got {guidance_scale}. "
            "Values below 1 would not weaken the instruction: they would silently turn guidance off."
        )


def check_sway_sampling_coef(sway_sampling_coef) -> None:
    if sway_sampling_coef is None:
        return
    if not is_real(sway_sampling_coef):
        raise TypeError(
            f"sway_sampling_coef must be a number or None, got {_type_name(sway_sampling_coef)}: "
            f"{sway_sampling_coef!r}."
        )
    low, high = SWAY_SAMPLING_RANGE
    if not (math.isfinite(sway_sampling_coef) and low <= sway_sampling_coef <= high):
        raise ValueError(
            f"sway_sampling_coef must be from {low:g} to {high:g} (None: uniform steps), got {sway_sampling_coef}; "
            "outside that range some steps would add noise back or go below zero noise."
        )


def check_length_cap(max_audio_length_in_s, limits: CallLimits) -> None:
    """`None` (the model's maximum) or a number of seconds within the model's range."""
    if max_audio_length_in_s is None:
        return
    if not is_real(max_audio_length_in_s):
        raise TypeError(
            f"max_audio_length_in_s must be a number of seconds, got {_type_name(max_audio_length_in_s)}: "
            f"{max_audio_length_in_s!r}."
        )
    if not (
        math.isfinite(max_audio_length_in_s)
        and limits.min_audio_length_in_s <= max_audio_length_in_s <= limits.max_audio_length_in_s
    ):
        raise ValueError(
            f"max_audio_length_in_s must be from {limits.min_audio_length_in_s:.3f} s (one latent frame) to "
            f"{limits.max_audio_length_in_s:.1f} s (this model's maximum), got {max_audio_length_in_s!r}."
        )


def check_audio_lengths(
    audio_length_in_s, batch_size: int, min_s: float, max_s: float, max_reason: str = "this model's maximum"
) -> None:
    """`None`, one length for every output, or a list with one length per instruction, each in seconds."""
    if audio_length_in_s is None:
        return
    if isinstance(audio_length_in_s, (list, tuple)):
        lengths = list(audio_length_in_s)
        if len(lengths) != batch_size:
            raise ValueError(
                f"Got {len(lengths)} values of audio_length_in_s for {batch_size} instructions; give one per "
                "instruction, or a single number for all."
            )
        names = [f"audio_length_in_s[{index}]" for index in range(len(lengths))]
    else:
        lengths, names = [audio_length_in_s], ["audio_length_in_s"]
    for name, length in zip(names, lengths):
        if not is_real(length):
            raise TypeError(f"{name} must be a number of seconds, got {_type_name(length)}: {length!r}.")
        if not (math.isfinite(length) and min_s <= length <= max_s):
            raise ValueError(
                f"{name} must be from {min_s:.3f} s (one latent frame) to {max_s:.1f} s ({max_reason}), "
                f"got {length!r}."
            )


def check_phoneme_durations(durations, batch_size: int, places_phonemes_by_durations: bool) -> None:
    """`None`, or one sequence of non-negative seconds per instruction (one per phoneme token; the counts are
    checked against the text once it is phonemized), each with some time in it."""
    if durations is None:
        return
    if not places_phonemes_by_durations:
        raise ValueError(
            "phoneme_durations_in_s needs a transformer that places phonemes by durations "
            "(phoneme_alignment='durations'); this one does not use them."
        )
    if not isinstance(durations, (list, tuple)):
        raise TypeError(
            "phoneme_durations_in_s must be a list with one sequence of seconds per instruction, got "
            f"{_type_name(durations)}."
        )
    if len(durations) != batch_size:
        raise ValueError(
            f"Got {len(durations)} sequences in phoneme_durations_in_s for {batch_size} instructions; give one "
            "per instruction."
        )
    for index, row in enumerate(durations):
        name = f"phoneme_durations_in_s[{index}]"
        values = row.tolist() if isinstance(row, (torch.Tensor, np.ndarray)) else row
        if not isinstance(values, (list, tuple)) or not all(is_real(value) for value in values):
            raise TypeError(f"{name} must be a flat sequence of seconds (numbers), got {_type_name(row)}.")
        if not all(math.isfinite(value) and value >= 0 for value in values) or not sum(values) > 0:
            raise ValueError(f"{name} must hold finite seconds >= 0 that add up to more than 0, got {row!r}.")


def check_phoneme_duration_counts(durations, token_counts: list[int]) -> None:
    """Each sequence of `phoneme_durations_in_s` has one value per token of its phonemized text."""
    for index, (row, count) in enumerate(zip(durations, token_counts)):
        if len(row) != count:
            raise ValueError(
                f"phoneme_durations_in_s[{index}] has {len(row)} values, but its text has {count} phoneme tokens "
                "(pipe.processor.phonemize(text) lists them); give one duration per token."
            )


def check_generator(generator, num_outputs: int) -> None:
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, (list, tuple)):
        raise TypeError(
            f"generator must be a torch.Generator or a list of them (one per output), got "
            f"{_type_name(generator)}: {generator!r}. For a seed, pass torch.Generator().manual_seed(seed)."
        )
    for index, item in enumerate(generator):
        if not isinstance(item, torch.Generator):
            raise TypeError(f"generator[{index}] must be a torch.Generator, got {_type_name(item)}.")
    if len(generator) != num_outputs:
        raise ValueError(
            f"Got {len(generator)} generators for {num_outputs} generated waveforms; give one per waveform."
        )


def check_instruction_embeds(embeds, mask, instruction_dim: int) -> None:
    """`(B, L, instruction_dim)` float embeddings with a `(B, L)` mask keeping at least one token per row."""
    if not isinstance(embeds, torch.Tensor):
        raise TypeError(f"instruction_embeds must be a torch.Tensor, got {_type_name(embeds)}.")
    if embeds.ndim != 3 or embeds.shape[-1] != instruction_dim or 0 in embeds.shape:
        raise ValueError(
            f"instruction_embeds must have shape (batch, tokens, {instruction_dim}) for this model's "
            f"instruction encoder, got {tuple(embeds.shape)}."
        )
    if not embeds.is_floating_point():
        raise ValueError(f"instruction_embeds must hold floats, got dtype {embeds.dtype}.")
    if not torch.isfinite(embeds).all():
        raise ValueError("instruction_embeds holds NaN or infinite values.")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(
            f"instruction_attention_mask (a bool tensor of shape (batch, tokens)) must accompany "
            f"instruction_embeds, got {_type_name(mask)}."
        )
    if tuple(mask.shape) != tuple(embeds.shape[:2]):
        raise ValueError(
            f"instruction_attention_mask must have shape {tuple(embeds.shape[:2])} (batch, tokens of "
            f"instruction_embeds), got {tuple(mask.shape)}."
        )
    if mask.is_floating_point() or mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
        raise ValueError(
            "instruction_attention_mask must be bool (or 0/1 integers): True marks a real token."
        )
    empty = [index for index, row in enumerate(mask.bool()) if not row.any()]
    if empty:
        raise ValueError(
            f"instruction_attention_mask keeps no token for item(s) {empty}: the instruction would be ignored."
        )


def check_latents(latents, channels: int, num_outputs: int) -> None:
    """Initial noise `(num_outputs, channels, frames)`; its length is checked once the frames are known."""
    if latents is None:
        return
    if not isinstance(latents, torch.Tensor):
        raise TypeError(f"latents must be a torch.Tensor, got {_type_name(latents)}.")
    if latents.ndim != 3 or latents.shape[0] != num_outputs or latents.shape[1] != channels:
        raise ValueError(
            f"latents must have shape ({num_outputs}, {channels}, frames), got {tuple(latents.shape)}."
        )
    if not latents.is_floating_point():
        raise ValueError(f"latents must hold floats, got dtype {latents.dtype}.")
    if not torch.isfinite(latents).all():
        raise ValueError("latents holds NaN or infinite values.")


def check_callback(callback: Callable | None, tensor_inputs, allowed: Sequence[str]) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback_on_step_end must be callable, got {_type_name(callback)}.")
    if not isinstance(tensor_inputs, (list, tuple)) or not all(
        isinstance(name, str) for name in tensor_inputs
    ):
        raise TypeError(f"callback_on_step_end_tensor_inputs must be a list of names, got {tensor_inputs!r}.")
    unknown = [name for name in tensor_inputs if name not in allowed]
    if unknown:
        raise ValueError(f"callback_on_step_end_tensor_inputs may only name {list(allowed)}, got {unknown}.")


def latents_from_callback(outputs, latents: torch.Tensor, step: int) -> torch.Tensor:
    """The latents to continue with after `callback_on_step_end` returned `outputs` at `step`."""
    if not isinstance(outputs, dict):
        raise TypeError(
            f"callback_on_step_end must return a dict (empty to change nothing, or {{'latents': ...}}), got "
            f"{_type_name(outputs)} at step {step}."
        )
    replaced = outputs.get("latents", latents)
    if not isinstance(replaced, torch.Tensor) or replaced.shape != latents.shape:
        shape = tuple(replaced.shape) if isinstance(replaced, torch.Tensor) else _type_name(replaced)
        raise ValueError(
            f"callback_on_step_end returned latents of shape {shape} at step {step}; they must keep the shape "
            f"{tuple(latents.shape)}."
        )
    return replaced
