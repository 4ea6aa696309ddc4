"""Lets diffusers' generic loader (trust_remote_code=True) find this component's class in the installed
instructaudio-diffusers; InstructAudioPipeline.from_pretrained never runs this file."""

from instructaudio_diffusers import InstructAudioTransformerModel  # noqa: F401
