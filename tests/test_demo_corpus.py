"""training/make_demo_corpus.py and training/corpus/: layout, determinism, resume, held-out split, labels.

Speech parts need Debian's flite, espeak-ng and sox; tests that render speech skip with that reason when a
tool is missing. Music needs only numpy/scipy; the tempo check uses librosa (the `eval` extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instructaudio_diffusers.training.demo_corpus import build as make_demo_corpus
from instructaudio_diffusers.training.demo_corpus import instructions, music, plan, sentences, speech

REPO = Path(__file__).resolve().parents[1]

MISSING_TOOLS = speech.missing_tools()
needs_tools = pytest.mark.skipif(
    bool(MISSING_TOOLS), reason=f"needs Debian flite, espeak-ng and sox on PATH; missing {MISSING_TOOLS}"
)
SCALE = "0.002"
CORE_COLUMNS = ("path", "instruction", "text", "language", "task")


def build(output_dir: Path, *extra: str) -> int:
    args = ["--output_dir", str(output_dir), "--scale", SCALE, "--no_progress", *extra]
    return make_demo_corpus.main(make_demo_corpus.parse_args(args))


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The whole corpus at a tiny scale: ~20 training clips of every part plus one held-out case per task."""
    if MISSING_TOOLS:
        pytest.skip(f"needs Debian flite, espeak-ng and sox on PATH; missing {MISSING_TOOLS}")
    output_dir = tmp_path_factory.mktemp("demo_corpus") / "corpus"
    assert build(output_dir, "--num_workers", "1") == 0
    return output_dir


# ---------------------------------------------------------------------------------------------- layout
@needs_tools
def test_corpus_rows_and_audio(corpus: Path):
    rows = rows_of(corpus / "metadata.jsonl")
    assert {row["task"] for row in rows} == {"speech", "dialogue", "music"}
    assert {row["language"] for row in rows if row["task"] == "speech"} == {"en", "zh"}
    for row in rows:
        assert all(column in row for column in CORE_COLUMNS), row
        assert row["instruction"].strip()
        assert row["language"] in (("en", "zh") if row["task"] == "music" else ("en", "zh", "mixed"))
        info = sf.info(str(corpus / row["path"]))
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
        audio, _ = sf.read(str(corpus / row["path"]), dtype="float32")
        assert abs(audio.size / 22050 - row["duration_s"]) < 1e-3
        assert 20 * np.log10(np.sqrt(np.mean(audio**2)) + 1e-12) > -45, row["id"]  # not silent
    dialogue = next(row for row in rows if row["task"] == "dialogue")
    assert dialogue["text"].startswith("[S0] ") and "[S1] " in dialogue["text"]
    assert dialogue["speaker_genders"] == [dialogue["s0_gender"], dialogue["s1_gender"]]
    summary = json.loads((corpus / "summary.json").read_text(encoding="utf-8"))
    assert summary["clips"] == len(rows) and set(summary["parts"]) == set(plan.PARTS)


@needs_tools
def test_instructions_state_only_true_attributes(corpus: Path):
    """What an instruction says (its `instruction_mentions`) agrees with the clip's recorded attributes."""
    for row in rows_of(corpus / "metadata.jsonl"):
        mentions = row["instruction_mentions"]
        if row["task"] == "speech":
            for key, value in mentions.items():
                assert row[key] == value, (row["id"], key)
        elif row["task"] == "dialogue":
            assert mentions["speakers"] == row["speaker_genders"]
        else:
            truth = {"tempo_bpm": row["bpm"], **row}
            for key, value in mentions.items():
                assert truth[key] == value, (row["id"], key)


@needs_tools
def test_held_out_cases_and_references(corpus: Path):
    cases = rows_of(corpus / "held_out_cases.jsonl")
    references = {row["id"]: row for row in rows_of(corpus / "held_out" / "metadata.jsonl")}
    assert {case["task"] for case in cases} == {"speech", "dialogue", "music"}
    for case in cases:
        assert set(case) >= {"id", "task", "language", "instruction", "text", "audio_length_in_s", "expect"}
        assert (corpus / case["reference_audio"]).is_file()
        assert case["stated"] == references[case["id"]]["instruction_mentions"]
        assert case["expect"].items() <= case["stated"].items()
    music_case = next(case for case in cases if case["task"] == "music")
    assert {"tempo_bpm", "mode", "instrument", "genre"} <= set(music_case["expect"])
    dialogue_case = next(case for case in cases if case["task"] == "dialogue")
    assert len(dialogue_case["expect"]["speakers"]) == 2


@needs_tools
def test_evaluation_harness_reads_cases_and_ground_truth(corpus: Path):
    """The cases and the held-out folder load with the evaluation package's own readers."""
    evaluation_cases = pytest.importorskip("instructaudio_diffusers.evaluation.cases")
    cases = evaluation_cases.load_cases(corpus / "held_out_cases.jsonl")
    items = evaluation_cases.load_ground_truth(corpus / "held_out")
    assert len(cases) == len(items) == len(rows_of(corpus / "held_out" / "metadata.jsonl"))
    music_item = next(item for item in items if item.task == "music")
    assert {"tempo_bpm", "mode", "instrument", "genre"} <= set(music_item.attributes)


@pytest.mark.slow
@needs_tools
def test_prepare_dataset_accepts_every_row(corpus: Path, tmp_path: Path):
    from instructaudio_diffusers.training import preparation as prepare_dataset

    args = prepare_dataset.parse_args(
        ["--metadata", str(corpus / "metadata.jsonl"), "--output_dir", str(tmp_path)]
    )
    records, bad_rows, _ = prepare_dataset.validate_rows(args, tmp_path)
    assert not bad_rows, bad_rows[:3]
    assert len(records) == len(rows_of(corpus / "metadata.jsonl"))


# ---------------------------------------------------------------------------------------------- determinism, resume
@needs_tools
def test_same_seed_same_bytes_with_two_workers(corpus: Path, tmp_path: Path):
    """A second build with two worker processes reproduces the first build's files byte for byte."""
    assert build(tmp_path / "again", "--num_workers", "2", "--parts", "speech_en", "speech_zh", "music") == 0
    rows = rows_of(tmp_path / "again" / "metadata.jsonl")
    assert len(rows) >= 5
    for row in rows:
        assert (tmp_path / "again" / row["path"]).read_bytes() == (corpus / row["path"]).read_bytes(), row[
            "id"
        ]


@needs_tools
def test_resume_renders_only_missing_clips(corpus: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    rows = rows_of(copy / "metadata.jsonl")
    removed = [rows[1], rows[4], rows[-1]]
    for row in removed:
        (copy / row["path"]).unlink()
    # A run killed while writing leaves a cut-off last line; it must be ignored, not fatal.
    with open(copy / "metadata.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"id": "speech_en_0000')
    before = {row["path"]: (copy / row["path"]).stat().st_mtime_ns for row in rows if row not in removed}

    assert build(copy, "--num_workers", "1") == 0
    summary = json.loads((copy / "summary.json").read_text(encoding="utf-8"))
    assert summary["this_run"]["clips_rendered"] == len(removed)
    for path, mtime in before.items():
        assert (copy / path).stat().st_mtime_ns == mtime
    for row in removed:
        assert (copy / row["path"]).read_bytes() == (corpus / row["path"]).read_bytes()
    assert rows_of(copy / "metadata.jsonl") == rows  # rewritten in plan order, complete again


def test_other_seed_in_same_folder_is_refused(tmp_path: Path):
    assert build(tmp_path / "c", "--parts", "music", "--num_workers", "1") == 0
    with pytest.raises(SystemExit, match="seed"):
        build(tmp_path / "c", "--parts", "music", "--seed", "1")


def test_plan_is_a_prefix_across_scales():
    small = plan.plan_corpus(0, 0.002)
    large = {job.clip_id: job for job in plan.plan_corpus(0, 0.01).jobs}
    for job in small.jobs:
        assert large[job.clip_id].render == job.render and large[job.clip_id].row == job.row


# ---------------------------------------------------------------------------------------------- held-out split
@pytest.fixture(scope="module")
def full_plan() -> plan.Plan:
    """The scale-1 plan (no audio): ~11,000 jobs in about two seconds."""
    return plan.plan_corpus(0, 1.0)


def test_held_out_sentences_and_templates_are_disjoint(full_plan: plan.Plan):
    pools = plan.held_out_sentences(0)
    for train, held in pools.values():
        assert held and not set(train) & set(held)
    full = full_plan
    assert full.pools["speech_en_train_distinct_sentences"] >= 5000
    assert full.pools["speech_zh_train_distinct_sentences"] >= 3000
    assert sum(job.split == "held_out" for job in full.jobs) >= 200
    assert sum(job.split == "train" and job.row["task"] == "dialogue" for job in full.jobs) >= 500

    held_ids = {
        i for language in ("en", "zh") for i, _ in instructions.iter_template_ids(language, held_out=True)
    }
    train_ids = {
        i for language in ("en", "zh") for i, _ in instructions.iter_template_ids(language, held_out=False)
    }
    assert not held_ids & train_ids
    for job in full.jobs:
        used = set(job.row["instruction_templates"])
        assert (used <= held_ids) if job.split == "held_out" else not (used & held_ids), job.clip_id
    training_text = "\n".join(job.row["text"] for job in full.jobs if job.split == "train")
    for sentence in pools["en"][1] + pools["zh"][1]:
        assert sentence not in training_text
    held_instructions = {job.row["instruction"] for job in full.jobs if job.split == "held_out"}
    assert not held_instructions & {job.row["instruction"] for job in full.jobs if job.split == "train"}


def test_every_planned_case_is_valid_for_the_harness(full_plan: plan.Plan):
    evaluation_cases = pytest.importorskip("instructaudio_diffusers.evaluation.cases")
    held_rows = [
        {"path": job.relative_path, **job.row, "duration_s": 3.0}
        for job in full_plan.jobs
        if job.split == "held_out"
    ]
    for case in make_demo_corpus.held_out_cases(held_rows):
        evaluation_cases.parse_case(case)  # raises on an unknown expect key, a bad value or language


def test_paraphrase_banks_have_enough_templates():
    for bank in (instructions._BANKS["en"], instructions._BANKS["zh"]):
        lists = [bank.SPEECH_FRAMES, bank.DIALOGUE_FRAMES, bank.MUSIC_FRAMES]
        lists += [options for values in bank.PHRASES.values() for options in values.values()]
        for options in lists:
            assert len(options) - instructions.HELD_OUT_PER_LIST >= 8, options
            assert len(set(options)) == len(options), options
    assert set(instructions._BANKS["en"].PHRASES) == set(instructions._BANKS["zh"].PHRASES)


# ---------------------------------------------------------------------------------------------- labels
def test_prosody_labels_follow_the_applied_numbers():
    assert speech.prosody_labels(speech.Prosody(*speech.EMOTION_PROXIES["happy"], "happy"))["pitch"] == "high"
    sad = speech.prosody_labels(speech.Prosody(*speech.EMOTION_PROXIES["sad"], "sad"))
    assert (sad["pitch"], sad["rate"], sad["loudness"]) == ("low", "slow", "soft")
    angry = speech.prosody_labels(speech.Prosody(*speech.EMOTION_PROXIES["angry"], "angry"))
    assert (angry["rate"], angry["loudness"]) == ("fast", "loud")
    rng = np.random.default_rng(0)
    for _ in range(300):
        prosody = speech.sample_prosody(rng)
        labels = speech.prosody_labels(prosody)
        if prosody.style == "whisper":
            assert labels["loudness"] == "soft" and prosody.emotion == "neutral"
        if labels["pitch"] == "normal":
            assert abs(prosody.pitch_cents) < 150


# ---------------------------------------------------------------------------------------------- music
def _chroma(audio: np.ndarray) -> np.ndarray:
    """Energy per pitch class (0 = C) of the whole clip, 55 Hz-2 kHz."""
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequencies = np.fft.rfftfreq(audio.size, 1 / 22050)
    band = (frequencies > 55) & (frequencies < 2000)
    classes = np.round(12 * np.log2(frequencies[band] / 440.0) + 9).astype(int) % 12
    return np.bincount(classes, weights=spectrum[band], minlength=12)


@pytest.mark.parametrize(
    "genre, instrument, tonic, mode",
    [("pop", "piano", 9, "minor"), ("classical", "strings", 2, "major"), ("jazz", "guitar", 5, "minor"),
     ("ambient", "organ", 7, "major"), ("rock", "synth", 4, "minor")],
)  # fmt: skip
def test_music_mode_is_heard_in_the_tonic_triad(genre: str, instrument: str, tonic: int, mode: str):
    audio = music.render_music(music.MusicSpec(genre, instrument, 100, tonic, mode, True, 8.0, seed=3))
    chroma = _chroma(audio)
    major_third, minor_third = chroma[(tonic + 4) % 12], chroma[(tonic + 3) % 12]
    assert (major_third > 2 * minor_third) if mode == "major" else (minor_third > 2 * major_third)
    assert chroma[tonic] > np.median(chroma)  # the tonic is prominent


@pytest.mark.parametrize(
    "genre, instrument, bpm", [("pop", "piano", 100), ("rock", "guitar", 132), ("electronic", "synth", 124)]
)
def test_music_tempo_matches_request(genre: str, instrument: str, bpm: int):
    librosa = pytest.importorskip("librosa", reason="tempo estimation needs librosa (the eval extra)")
    audio = music.render_music(music.MusicSpec(genre, instrument, bpm, 0, "major", True, 12.0, seed=1))
    assert audio.dtype == np.float32 and audio.size == 12 * 22050
    onset_envelope = librosa.onset.onset_strength(y=audio, sr=22050)
    estimate = float(librosa.feature.tempo(onset_envelope=onset_envelope, sr=22050)[0])
    assert abs(estimate - bpm) / bpm < 0.05, estimate


def test_music_render_is_deterministic_and_bounded():
    spec = music.MusicSpec("jazz", "strings", 150, 3, "minor", True, 5.0, seed=7)
    first, second = music.render_music(spec), music.render_music(spec)
    assert np.array_equal(first, second) and np.abs(first).max() < 1.0


# ---------------------------------------------------------------------------------------------- speech
@needs_tools
def test_chinese_render_reads_processor_pinyin_and_grows_with_syllables():
    persona = speech.persona_by_name("espeak_zh_f2")
    texts = ["你好。", "我们下午去银行。", "他在长城上行走，听说重庆的孩子都长高了。"]
    durations = []
    for text in texts:
        audio, spoken = speech.render_turn(text, persona, speech.Prosody())
        assert 20 * np.log10(np.sqrt(np.mean(audio**2))) > -30
        durations.append(audio.size / 22050)
    assert durations == sorted(durations) and durations[-1] > 2 * durations[0]
    spoken = speech.engine_text(texts[-1], "zh")
    for word in ("chang2cheng2", "xing2zou3", "chong2qing4", "zhang3gao1"):
        assert word in spoken, spoken
    assert speech.engine_text("下午3:30", "zh") == "xia4wu3 san1dian3 san1shi2fen1"


def test_sentence_grammars_are_distinct_and_deterministic():
    assert sentences.english_sentences(50, 1) == sentences.english_sentences(50, 1)
    assert len(set(sentences.chinese_sentences(300, 2))) == 300
    exchange = sentences.exchanges(1, 0)[0]
    assert len(exchange) == 4 and all(len(turn) == 2 for turn in exchange)


def test_shipped_case_file_is_the_full_corpus_held_out_split(full_plan: plan.Plan):
    """evaluation/demo_held_out_cases.jsonl is what `make_demo_corpus.py --seed 0` writes (lengths aside,
    which come from the renders): regenerating the corpus gives the reference audio of every case."""
    shipped = rows_of(REPO / "evaluation" / "demo_held_out_cases.jsonl")
    held_rows = [
        {"path": job.relative_path, **job.row, "duration_s": 0.0}
        for job in full_plan.jobs
        if job.split == "held_out"
    ]
    planned = make_demo_corpus.held_out_cases(held_rows)
    assert len(shipped) >= 200

    def without_length(case: dict) -> dict:
        return {key: value for key, value in case.items() if key != "audio_length_in_s"}

    assert [without_length(case) for case in shipped] == [without_length(case) for case in planned]
    assert all(case["audio_length_in_s"] > 0 for case in shipped)
