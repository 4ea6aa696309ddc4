"""instructaudio-diffusers: instruction-driven speech, dialogue and music generation (InstructAudio)."""

__version__ = "0.1.0.dev0"

from .audio import MelSpectrogram, load_audio, write_wav
from .models import AutoencoderKLMel, GriffinLimVocoder, HifiGanVocoder, InstructAudioTransformerModel
from .processing import InstructAudioProcessor
