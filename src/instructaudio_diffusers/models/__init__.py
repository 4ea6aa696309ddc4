"""Models: know nothing of pipelines. One model per file."""

from .autoencoder_kl_mel import AutoencoderKLMel
