"""instructaudio-diffusers: instruction-driven speech, dialogue and music generation (InstructAudio)."""

__version__ = "0.1.0.dev0"

# diffusers loads a saved component by importing the module named in model_index.json and looking for
# its loadable base classes there (DESIGN §7.1); re-exporting them keeps the package root loadable too.
from diffusers import ModelMixin
from transformers import PreTrainedTokenizer

from .audio import MelSpectrogram, load_audio, write_wav
from .models import AutoencoderKLMel, GriffinLimVocoder, HifiGanVocoder, InstructAudioTransformerModel
from .pipelines import InstructAudioPipeline
from .processing import InstructAudioProcessor

__all__ = [
    "AutoencoderKLMel",
    "GriffinLimVocoder",
    "HifiGanVocoder",
    "InstructAudioPipeline",
    "InstructAudioProcessor",
    "InstructAudioTransformerModel",
    "MelSpectrogram",
    "ModelMixin",
    "PreTrainedTokenizer",
    "load_audio",
    "write_wav",
]
