"""Models: know nothing of pipelines. One model per file."""

from .autoencoder_kl_mel import AutoencoderKLMel
from .transformer_instructaudio import InstructAudioTransformerModel, InstructAudioTransformerOutput
from .vocoder_griffin_lim import GriffinLimVocoder
from .vocoder_hifigan import (
    HifiGanVocoder,
    VocoderOutput,
    check_chunk_frames,
    check_vocoder_mel_settings,
    chunk_windows,
    frames_vocoded,
    receptive_field_frames,
    vocode,
    vocode_chunks,
    vocoder_mel_settings,
)
