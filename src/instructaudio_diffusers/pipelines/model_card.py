"""Hub model cards for saved InstructAudio pipelines."""

from __future__ import annotations

import os

from huggingface_hub import ModelCard, ModelCardData

DEFAULT_TAGS = [
    "text-to-speech",
    "text-to-audio",
    "text-to-music",
    "diffusers",
    "instructaudio",
    "flow-matching",
]


def write_model_card(
    save_directory: str | os.PathLike,
    description: str | None = None,
    license: str = "apache-2.0",
    extra_tags: list[str] | None = None,
    overwrite: bool = False,
) -> str | None:
    """Write `README.md` with Hub YAML metadata into `save_directory` unless one exists already.

    Returns the path written, or `None` when an existing card was kept (a card the user wrote by hand
    is never overwritten unless `overwrite=True`).
    """
    path = os.path.join(save_directory, "README.md")
    if os.path.exists(path) and not overwrite:
        return None
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="text-to-speech",
        tags=DEFAULT_TAGS + list(extra_tags or []),
        language=["en", "zh"],
        license=license,
    )
    body = description or (
        "An [InstructAudio](https://arxiv.org/abs/2511.18487) pipeline saved with `instructaudio-diffusers`: "
        "speech, two-speaker dialogue and music in English and Chinese from a natural-language instruction "
        "plus the text or lyrics, with no reference audio."
    )
    usage = (
        "```python\n"
        "from instructaudio_diffusers import InstructAudioPipeline, write_wav\n\n"
        'pipe = InstructAudioPipeline.from_pretrained("<this folder or repo id>")\n'
        "audio = pipe(\n"
        '    instruction="A young woman speaks cheerfully at a normal pace.",\n'
        '    text="Hello! What a sunny day!",\n'
        ").audios[0]\n"
        'write_wav("speech.wav", audio, pipe.sampling_rate)\n'
        "```\n"
    )
    content = f"---\n{data.to_yaml()}\n---\n\n# InstructAudio pipeline\n\n{body}\n\n## Usage\n\n{usage}"
    ModelCard(content).save(path)
    return path
