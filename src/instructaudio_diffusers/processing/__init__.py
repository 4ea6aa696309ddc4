"""Text -> phoneme tokens: normalization, G2P, tags and the phoneme vocabulary. Knows nothing of models."""

from .processor import InstructAudioProcessor

__all__ = ["InstructAudioProcessor"]
