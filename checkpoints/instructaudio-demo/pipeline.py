"""Makes this folder loadable with diffusers' generic loader:

    DiffusionPipeline.from_pretrained(PATH_OR_REPO_ID, trust_remote_code=True)

It only imports the installed package (pip install -e ".[demo]" in a checkout of instructaudio-diffusers);
InstructAudioPipeline.from_pretrained(PATH_OR_REPO_ID) loads the folder without running this file."""

from instructaudio_diffusers import InstructAudioPipeline  # noqa: F401
