"""instructaudio-diffusers: instruction-driven speech, dialogue and music generation (InstructAudio)."""

__version__ = "0.1.0.dev0"

# diffusers loads a component by looking up its class and its loadable base classes (ModelMixin,
# PreTrainedTokenizer) on the module `model_index.json` names; saved folders name the package root.
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
