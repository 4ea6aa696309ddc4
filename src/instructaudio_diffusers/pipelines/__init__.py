"""Pipelines: wire processing, models and the scheduler together."""

from .model_card import write_model_card
from .pipeline_instructaudio import InstructAudioPipeline, flow_matching_sigmas
