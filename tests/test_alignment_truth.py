"""Synthesizer timings as the truth for phoneme durations: training/corpus/{timings,reference}.py and
training/check_alignment.py.

Hand-made phone strings check the alignment, the oracle durations and the scoring where the answer is
known; real flite and espeak-ng renders (skipped with the reason when a tool is missing) check that the
timings follow the renderer exactly and fit the audio.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from instructaudio_diffusers.training.demo_corpus import speech
from instructaudio_diffusers.training.demo_corpus.alignment_check import audio_checks, score_records
from instructaudio_diffusers.training.demo_corpus.reference import (
    FRAMES_PER_SECOND,
    align_units,
    boundary_errors,
    build_reference,
    latent_frames,
    summarize_errors,
    uniform_durations,
)
from instructaudio_diffusers.training.demo_corpus.timings import (
    SynthPhone,
    clip_timings,
    espeak_phones,
    parse_flite_durations,
    turn_timings,
)

REPO = Path(__file__).resolve().parents[1]

MISSING_TOOLS = speech.missing_tools()
needs_tools = pytest.mark.skipif(
    bool(MISSING_TOOLS), reason=f"needs Debian flite, espeak-ng and sox on PATH; missing {MISSING_TOOLS}"
)
HAS_LIBESPEAK = ctypes.util.find_library("espeak-ng") is not None
needs_libespeak = pytest.mark.skipif(
    not HAS_LIBESPEAK or bool(MISSING_TOOLS), reason="needs libespeak-ng.so.1 and the espeak-ng command"
)
PROCESSOR_DIR = REPO / "checkpoints" / "instructaudio-demo" / "processor"


def at_frames(*frames: float) -> list[float]:
    """Seconds of latent-frame positions, so that hand-made timings round to known frames."""
    return [frame / FRAMES_PER_SECOND for frame in frames]


def phones(phone_set: str, *spans: tuple[str, float, float]) -> list[SynthPhone]:
    return [SynthPhone(name, *at_frames(start, end), phone_set) for name, start, end in spans]


def samples_for(frames: int) -> int:
    return frames * 512


@pytest.fixture(scope="module")
def processor():
    from instructaudio_diffusers.processing import InstructAudioProcessor

    return InstructAudioProcessor.from_pretrained(str(PROCESSOR_DIR))


# ---------------------------------------------------------------------------------------------- known answers
def test_latent_frames_and_uniform_stretch():
    assert latent_frames(22050) == 43  # 86 mel frames
    assert latent_frames(22272) == 44  # 87 mel frames -> ceil(43.5)
    # Frame j of T goes to token floor((j + 0.5) * L / T): for L=3, T=7 the centres give 0 0 1 1 1 2 2.
    assert uniform_durations(3, 7).tolist() == [2, 3, 2]
    durations = uniform_durations(11, 46)
    assert durations.sum() == 46
    boundaries = np.cumsum(durations)[:-1]
    assert boundaries.tolist() == [int(np.ceil(k * 46 / 11 - 0.5)) for k in range(1, 11)]


def test_flite_durations_are_laid_end_to_end_and_clamped():
    output = "pau:0.200 hh:0.300 ax:0.350\npau:0.100 ow:0.400 pau:0.550\n"
    parsed = parse_flite_durations(output, wave_seconds=0.85)
    # Last ends sum to 0.90 s against a 0.85 s wave: each utterance is 0.025 s shorter than its last end.
    expected = [
        ("pau", 0.0, 0.2), ("hh", 0.2, 0.3), ("ax", 0.3, 0.35),
        ("pau", 0.325, 0.425), ("ow", 0.425, 0.725), ("pau", 0.725, 0.85),
    ]  # fmt: skip
    assert [(p.name, round(p.start_s, 6), round(p.end_s, 6)) for p in parsed] == expected
    assert {p.phone_set for p in parsed} == {"flite"}


def test_alignment_substitutes_within_a_class_and_never_silence_for_a_phone():
    pairs = align_units(["K", "AE", "T"], ["K", "AA", "T", "S"], np.ones(3), np.ones(4))
    assert pairs == [(0, 0), (1, 1), (2, 2), (None, 3)]
    # A pause may be skipped, but a silence never stands for a phone (and the other way round).
    pairs = align_units(["SIL", "N"], ["N", "SIL"], np.array([0.5, 1.0]), np.array([0.3, 0.3]))
    assert (0, 1) not in pairs and (1, 0) in pairs


def test_flite_reference_and_oracle_durations():
    tokens = ["<en>", "HH", "AH0", "L", "OW1", "<,>", "W", "ER1", "L", "D", "<.>"]
    timed = phones(
        "flite",
        ("pau", 0, 5), ("hh", 5, 8), ("ax", 8, 11), ("l", 11, 14), ("ow", 14, 20), ("pau", 20, 26),
        ("w", 26, 29), ("er", 29, 35), ("l", 35, 38), ("d", 38, 41), ("pau", 41, 46),
    )  # fmt: skip
    reference = build_reference(tokens, timed, samples_for(46))
    assert reference.latent_frames == 46
    assert reference.oracle_durations.tolist() == [5, 3, 3, 3, 6, 6, 3, 6, 3, 3, 5]
    assert reference.boundary_index.tolist() == list(range(1, 11))
    assert reference.boundary_frames.tolist() == [5, 8, 11, 14, 20, 26, 29, 35, 38, 41]
    assert reference.counts["matched_phone_tokens"] == reference.counts["phone_tokens"] == 8
    assert not boundary_errors(reference.oracle_durations, reference).any()
    uniform = boundary_errors(uniform_durations(11, 46), reference)
    expected = np.array([int(np.ceil(k * 46 / 11 - 0.5)) for k in range(1, 11)]) - reference.boundary_frames
    assert uniform.tolist() == expected.tolist()


def test_espeak_reference_with_multi_unit_phone_linking_mark_and_word_gap():
    """ "uncle see": espeak-ng's @L is AH and L in one phone (their shared edge is untimed), its `;` joins
    the phone before it, and a short pause between the words goes to the word boundary."""
    tokens = ["<en>", "AH1", "NG", "K", "AH0", "L", "<wb>", "S", "IY1", "<.>"]
    timed = [
        SynthPhone("(silence)", *at_frames(0, 2), "silence"),
        *phones("espeak_en", ("V", 2, 6), ("N", 6, 9), ("k", 9, 11), ("@L", 11, 16), (";", 16, 17),
                ("_", 17, 21), ("s", 21, 25), ("i:", 25, 31), ("_:", 31, 36)),
    ]  # fmt: skip
    reference = build_reference(tokens, timed, samples_for(36))
    assert reference.oracle_durations.tolist() == [2, 4, 3, 2, 3, 3, 4, 4, 6, 5]
    assert reference.boundary_index.tolist() == [1, 2, 3, 4, 6, 7, 8, 9]
    assert reference.boundary_frames.tolist() == [2, 6, 9, 11, 17, 21, 25, 31]
    assert reference.counts["matched_phone_tokens"] == 5 and reference.counts["phone_tokens"] == 7


def test_mandarin_finals_span_several_units(processor):
    tokens = processor.phonemize("你好。")
    assert tokens == ["<zh>", "n", "i2", "h", "ao3", "<.>"]  # third-tone sandhi: ni2 hao3
    timed = phones("espeak_zh", ("n", 0, 4), ("i", 4, 9), ("X", 9, 12), ("Au", 12, 20), ("_:", 20, 26))
    reference = build_reference(tokens, timed, samples_for(26))
    assert reference.oracle_durations.tolist() == [0, 4, 5, 3, 8, 6]
    assert reference.boundary_index.tolist() == [1, 2, 3, 4, 5]
    assert reference.boundary_frames.tolist() == [0, 4, 9, 12, 20]


def test_scores_shift_only_the_moved_boundary_and_reject_bad_durations():
    tokens = ["<en>", "HH", "AH0", "L", "OW1", "<.>"]
    timed = phones(
        "flite", ("pau", 0, 4), ("hh", 4, 7), ("ax", 7, 9), ("l", 9, 13), ("ow", 13, 20), ("pau", 20, 24)
    )
    reference = build_reference(tokens, timed, samples_for(24))
    moved = reference.oracle_durations.copy()
    moved[2] += 3  # AH0 ends 3 frames late, L starts late and is 3 frames shorter
    moved[3] -= 3
    errors = boundary_errors(moved, reference)
    assert errors.tolist() == [0, 0, 3, 0, 0]
    assert summarize_errors(errors) == {
        "boundaries": 5,
        "median_abs_frames": 0.0,
        "within_2_frames": 0.8,
        "mean_abs_frames": 0.6,
    }
    with pytest.raises(ValueError, match="sum to"):
        boundary_errors(moved + 1, reference)
    with pytest.raises(ValueError, match="durations for"):
        boundary_errors(moved[:-1], reference)


def test_report_groups_by_language_and_engine_and_skips_excluded():
    tokens = ["<en>", "HH", "AH0", "<.>"]
    reference = build_reference(
        tokens, phones("flite", ("pau", 0, 4), ("hh", 4, 8), ("ax", 8, 12), ("pau", 12, 16)), samples_for(16)
    )
    record = {
        "id": "a",
        "language": "en",
        "engine": "flite",
        "excluded": None,
        "reference": reference.to_json(),
    }
    excluded = {**record, "id": "b", "excluded": "re-rendered length differs"}
    report = score_records([record, excluded], {"a": reference.oracle_durations})
    assert set(report["groups"]) == {"all", "en", "en/flite"}
    assert report["groups"]["en"]["durations"]["median_abs_frames"] == 0.0
    assert report["groups"]["en"]["uniform"]["boundaries"] == 3
    assert report["skipped"] == {"b": "excluded: re-rendered length differs"}


# ---------------------------------------------------------------------------------------------- real renders
@needs_tools
def test_flite_timings_follow_the_renderer_and_fit_the_audio(tmp_path: Path, processor):
    """A flite clip with a pitch shift and a slower tempo: same length as the renderer's, pauses silent
    and sonorant edges where the audio's level changes, and every phone token matched."""
    persona = speech.persona_by_name("flite_rms")
    prosody = speech.Prosody(pitch_cents=-250, tempo=0.8)
    text = "Well, we were all alone in the morning. Now we rest."
    audio, _ = speech.render_turn(text, persona, prosody, str(tmp_path))
    timed, num_samples = turn_timings(text, persona, prosody, 0, str(tmp_path))
    assert num_samples == audio.size
    assert timed[-1].end_s <= audio.size / 22050 + 1e-9
    # The tempo stretched the engine's 0.8 x time: the timed speech spans the clip bar its margins.
    sounding = [p for p in timed if p.name != "pau"]
    assert abs(sounding[-1].end_s - sounding[0].start_s - (audio.size / 22050 - 0.3)) < 0.1
    from instructaudio_diffusers.training.demo_corpus.timings import ClipTimings

    checks = audio_checks(ClipTimings(timed, num_samples), audio)
    assert checks["length_match"]
    assert max(checks["silence_levels_db"]) < -30 and min(checks["vowel_levels_db"]) > -20
    edges = np.abs(checks["onset_errors_ms"] + checks["offset_errors_ms"])
    assert edges.size >= 4 and np.mean(edges <= 2 * 1000 / FRAMES_PER_SECOND) >= 0.75
    reference = build_reference(processor.phonemize(text), timed, num_samples)
    assert reference.counts["matched_phone_tokens"] >= 0.9 * reference.counts["phone_tokens"]
    assert reference.oracle_durations.sum() == latent_frames(audio.size)
    uniform = summarize_errors(
        boundary_errors(uniform_durations(len(reference.tokens), reference.latent_frames), reference)
    )
    assert uniform["median_abs_frames"] >= 1


@needs_libespeak
def test_espeak_library_matches_the_command_sample_for_sample(tmp_path: Path):
    """Each synthesis starts from a fresh library state: a second text in another voice is still what the
    `espeak-ng` command writes (a reused library state drifts by a few samples)."""
    for voice, pitch, text in (
        ("en-us+f3", None, "We will meet at the station."),
        ("en+grandpa", 40, "Amy's uncle."),
    ):
        samples, rate, timed = espeak_phones(text, voice, pitch, 160, "espeak_en")
        text_file, wav_file = tmp_path / "text.txt", tmp_path / "out.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        pitch_option = [] if pitch is None else ["-p", str(pitch)]
        subprocess.run(
            ["espeak-ng", "-v", voice, *pitch_option, "-s", "160", "-f", str(text_file), "-w", str(wav_file)],
            check=True,
        )
        expected, expected_rate = sf.read(str(wav_file), dtype="int16")
        assert rate == expected_rate and np.array_equal(samples, expected)
        assert timed[0].start_s < 0.05 and timed[-1].end_s == samples.size / rate
        assert all(a.end_s == b.start_s for a, b in zip(timed, timed[1:]))


@needs_libespeak
def test_dialogue_timings_place_turns_with_their_gaps(tmp_path: Path):
    from instructaudio_diffusers.training.demo_corpus.plan import render_job

    render = {
        "kind": "dialogue",
        "turns": [{"speaker": 0, "text": "Have you been to the bank?"}, {"speaker": 1, "text": "你好。"}],
        "personas": ["flite_slt", "espeak_zh_m3"],
        "prosodies": [{"pitch_cents": 20, "tempo": 1.03, "gain_db": 0.0}, {"pitch_cents": 0, "tempo": 0.97, "gain_db": 0.0}],
        "gaps_s": [0.5],
        "seed": 3,
    }  # fmt: skip
    audio, _ = render_job(render, str(tmp_path))
    timings = clip_timings(render, str(tmp_path))
    assert timings.num_samples == audio.size
    assert {p.phone_set for p in timings.phones} == {"flite", "espeak_zh", "silence"}
    assert all(a.end_s == pytest.approx(b.start_s) for a, b in zip(timings.phones, timings.phones[1:]))
    gap = next(p for p in timings.phones if p.phone_set == "silence" and p.end_s - p.start_s >= 0.49)
    last_english = max(p.end_s for p in timings.phones if p.phone_set == "flite")
    assert gap.start_s == pytest.approx(last_english)


# ---------------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    """Three English clips of the real plan (seed 0) in a corpus folder, as make_demo_corpus writes them."""
    if MISSING_TOOLS or not HAS_LIBESPEAK:
        pytest.skip(f"needs flite, espeak-ng, sox and libespeak-ng; missing {MISSING_TOOLS}")
    from instructaudio_diffusers.training.demo_corpus import build as make_demo_corpus
    from instructaudio_diffusers.training.demo_corpus.plan import plan_corpus

    corpus = tmp_path_factory.mktemp("corpus")
    jobs = [job for job in plan_corpus(0, 0.002, ("speech_en",)).jobs if job.split == "train"][:3]
    rows = [make_demo_corpus.render_to_disk(job, str(corpus)) for job in jobs]
    (corpus / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (corpus / "corpus_config.json").write_text(json.dumps({"seed": 0}), encoding="utf-8")
    return corpus


@pytest.mark.slow
def test_reference_and_score_commands(tiny_corpus: Path, tmp_path: Path, capsys):
    from instructaudio_diffusers.training.demo_corpus import check as check_alignment

    output = tmp_path / "out"
    run = ["--num_workers", "1", "--no_progress"]
    assert check_alignment.main(check_alignment.parse_args(
        ["reference", "--corpus_dir", str(tiny_corpus), "--output_dir", str(output), *run]
    )) == 0  # fmt: skip
    records = check_alignment.read_jsonl(output / "reference.jsonl")
    oracle = check_alignment.read_jsonl(output / "oracle_durations.jsonl")
    assert len(records) == len(oracle) == 3 and not any(record["excluded"] for record in records)
    for entry, record in zip(oracle, records):
        samples = sf.info(str(tiny_corpus / "speech_en" / f"{entry['id']}.wav")).frames
        assert sum(entry["durations"]) == latent_frames(samples) == record["reference"]["latent_frames"]
    check = json.loads((output / "timing_check.json").read_text())
    assert check["all"]["length_match"] == 3

    # A JSONL of uniform durations scores exactly as the uniform baseline; the oracle scores zero.
    uniform_file = tmp_path / "uniform.jsonl"
    uniform_file.write_text("".join(
        json.dumps({"id": r["id"], "durations": uniform_durations(len(r["reference"]["tokens"]), r["reference"]["latent_frames"]).tolist()}) + "\n"
        for r in records
    ))  # fmt: skip
    report_file = tmp_path / "report.json"
    score = ["score", "--corpus_dir", str(tiny_corpus), "--reference", str(output / "reference.jsonl"), *run]
    assert (
        check_alignment.main(
            check_alignment.parse_args(
                [*score, "--durations", str(uniform_file), "--output", str(report_file)]
            )
        )
        == 0
    )
    report = json.loads(report_file.read_text())["groups"]["en"]
    assert report["durations"] == report["uniform"] and report["clips"] == 3
    assert (
        check_alignment.main(
            check_alignment.parse_args(
                [*score, "--durations", str(output / "oracle_durations.jsonl"), "--output", str(report_file)]
            )
        )
        == 0
    )
    report = json.loads(report_file.read_text())["groups"]["en"]
    assert report["durations"]["median_abs_frames"] == 0 and report["durations"]["within_2_frames"] == 1.0
    assert "uniform" in capsys.readouterr().out
    assert len(check_alignment.read_jsonl(output / "reference.jsonl")) == 3  # scoring reused the records


@pytest.mark.slow
def test_score_reads_a_prepared_dataset(tiny_corpus: Path, tmp_path: Path, processor):
    from instructaudio_diffusers.training import preparation as prepare_dataset
    from instructaudio_diffusers.training.data import load_prepared_dataset
    from instructaudio_diffusers.training.demo_corpus import check as check_alignment

    prepared = tmp_path / "prepared"
    assert prepare_dataset.main(prepare_dataset.parse_args([
        "--audio_dir", str(tiny_corpus), "--metadata", str(tiny_corpus / "metadata.jsonl"),
        "--output_dir", str(prepared), "--processor", str(PROCESSOR_DIR),
    ])) == 0  # fmt: skip
    dataset = load_prepared_dataset(prepared)
    frames = [latent_frames(sf.info(path).frames) for path in dataset["audio_path_absolute"]]
    tokens = [len(processor.phonemize(text)) for text in dataset["text"]]
    with_durations = dataset.add_column(
        "durations", [uniform_durations(n, t).tolist() for n, t in zip(tokens, frames)]
    )
    with_durations.save_to_disk(str(tmp_path / "with_durations"))
    report_file = tmp_path / "report.json"
    assert check_alignment.main(check_alignment.parse_args([
        "score", "--dataset", str(tmp_path / "with_durations"), "--num_workers", "1", "--no_progress",
        "--output", str(report_file),
    ])) == 0  # fmt: skip
    report = json.loads(report_file.read_text())
    assert not report["skipped"] and report["groups"]["all"]["clips"] == 3
    assert report["groups"]["all"]["durations"] == report["groups"]["all"]["uniform"]
