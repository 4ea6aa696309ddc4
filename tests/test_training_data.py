"""training/prepare_dataset.py: validation of a corpus, bad-row reporting, cached latents and embeddings."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from instructaudio_diffusers.training import preparation as prepare_dataset
from instructaudio_diffusers.training.data import load_prepared_dataset, resolve_audio_path

REPO = Path(__file__).resolve().parents[1]

SAMPLING_RATE = 22050
TINY_VAE = dict(
    n_mels=80, latent_channels=4, block_out_channels=(16, 32), downsample_factors=(2,), layers_per_block=1
)


def tone(
    seconds: float, frequency: float = 440.0, amplitude: float = 0.3, sampling_rate: int = SAMPLING_RATE
):
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def row(path, task="speech", text="Hello there.", instruction="A calm woman speaks.", language="en", **extra):
    return {
        "path": path,
        "instruction": instruction,
        "text": text,
        "language": language,
        "task": task,
        **extra,
    }


# Expected first reason of every bad row, keyed by its path.
BAD_REASONS = {
    "missing.wav": "missing_file",
    "corrupt.wav": "undecodable_audio",
    "silent.wav": "silent",
    "short.wav": "too_short",
    "long.wav": "too_long",
    "no_instruction.wav": "empty_instruction",
    "bad_text.wav": "text_rejected",
    "podcast.wav": "unknown_task",
    "no_text.wav": "empty_text",
    "numbers.wav": "not_a_string",
    "escape.wav": "path_outside_audio_dir",
    "absolute.wav": "path_outside_audio_dir",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder of clips plus `metadata.jsonl` with 4 good rows (5 with flite) and one row per bad reason."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "clips").mkdir()
    # Readable audio outside the corpus: a metadata row must not be able to pull it in.
    outside = tmp_path_factory.mktemp("outside")
    for name in ("escape.wav", "absolute.wav"):
        sf.write(outside / name, tone(1.0), SAMPLING_RATE)
    good = {
        "clips/a.wav": (tone(1.0, 220), row("clips/a.wav", speaker="spk1", emotion="calm")),
        "clips/b.flac": (
            tone(0.8, 330),
            row("clips/b.flac", text="你好,世界。", language="zh", speaker="spk2"),
        ),
        "clips/c.wav": (
            tone(1.2, 440),
            row("clips/c.wav", task="music", text="", language="", genre="ambient"),
        ),
        "clips/d.wav": (
            tone(0.9, 550),
            row("clips/d.wav", task="dialogue", text="[S0] Hi! [S1] Hello.", speaker=3),
        ),
    }
    for path, (audio, _) in good.items():
        sf.write(root / path, audio, SAMPLING_RATE)
    rows = [metadata for _, metadata in good.values()]
    if shutil.which("flite"):
        subprocess.run(
            ["flite", "-voice", "slt", "-t", "Good morning.", "-o", str(root / "clips/flite.wav")],
            check=True,
            timeout=60,
        )
        rows.append(row("clips/flite.wav", text="Good morning."))

    (root / "clips/corrupt.wav").write_bytes(b"RIFF\x00\x01junk that is not audio" * 10)
    sf.write(root / "clips/silent.wav", np.zeros(SAMPLING_RATE, np.float32), SAMPLING_RATE)
    sf.write(root / "clips/short.wav", tone(0.2), SAMPLING_RATE)
    sf.write(root / "clips/long.wav", tone(6.0, sampling_rate=8000), 8000)
    for name in ("no_instruction.wav", "bad_text.wav", "podcast.wav", "no_text.wav", "numbers.wav"):
        sf.write(root / "clips" / name, tone(1.0), SAMPLING_RATE)
    rows += [
        row("clips/missing.wav"),
        row("clips/corrupt.wav"),
        row("clips/silent.wav"),
        row("clips/short.wav"),
        row("clips/long.wav"),
        row("clips/no_instruction.wav", instruction="  "),
        row("clips/bad_text.wav", text="[S9] unknown speaker"),
        row("clips/podcast.wav", task="podcast"),
        row("clips/no_text.wav", text=""),
        row("clips/numbers.wav", instruction=123, text=456),
        row(f"../{outside.name}/escape.wav"),
        row(str(outside / "absolute.wav")),
    ]
    lines = [json.dumps(item, ensure_ascii=False) for item in rows]
    lines.insert(2, "{this line is not json")
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> tuple[Path, int]:
    """The corpus prepared once for the module: `(dataset folder, exit code)`."""
    output = tmp_path_factory.mktemp("prepared") / "dataset"
    args = prepare_dataset.parse_args(
        [
            "--audio_dir",
            str(corpus),
            "--metadata",
            str(corpus / "metadata.jsonl"),
            "--output_dir",
            str(output),
            "--max_duration",
            "5",
        ]
    )
    return output, prepare_dataset.main(args)


def good_paths(corpus: Path) -> set[str]:
    paths = {"clips/a.wav", "clips/b.flac", "clips/c.wav", "clips/d.wav"}
    return paths | ({"clips/flite.wav"} if (corpus / "clips/flite.wav").exists() else set())


def test_dataset_holds_exactly_the_good_rows(corpus, prepared):
    output, exit_code = prepared
    assert exit_code == 0
    dataset = load_prepared_dataset(output)
    assert set(dataset["source_path"]) == good_paths(corpus)
    by_path = {item["source_path"]: item for item in dataset}
    a = by_path["clips/a.wav"]
    assert a["duration_s"] == pytest.approx(1.0) and a["sampling_rate"] == SAMPLING_RATE
    assert (a["instruction"], a["text"], a["language"], a["task"]) == (
        "A calm woman speaks.",
        "Hello there.",
        "en",
        "speech",
    )
    # Extra attribute columns are kept; rows without them get None, a mixed-type column becomes strings.
    assert a["emotion"] == "calm" and by_path["clips/c.wav"]["emotion"] is None
    assert by_path["clips/c.wav"]["genre"] == "ambient" and by_path["clips/d.wav"]["speaker"] == "3"
    assert by_path["clips/c.wav"]["text"] == "" and by_path["clips/c.wav"]["language"] == ""
    for item in dataset:
        assert Path(resolve_audio_path(item, output)).samefile(corpus / item["source_path"])


def test_every_bad_row_is_reported_with_its_reason(prepared):
    output, _ = prepared
    bad = [json.loads(line) for line in (output / "bad_rows.jsonl").read_text(encoding="utf-8").splitlines()]
    reasons = {Path(item["path"]).name: item["reason"] for item in bad if "path" in item}
    assert reasons == BAD_REASONS
    malformed = [item for item in bad if item["reason"] == "malformed_row"]
    assert len(malformed) == 1 and malformed[0]["line"] == 3
    rejected = next(item for item in bad if item["reason"] == "text_rejected")
    assert "S9" in rejected["problems"][0][1]
    # Numbers are not read as their digits, and nothing else is blamed for what they left empty.
    numbers = next(item for item in bad if item["reason"] == "not_a_string")
    assert numbers["problems"] == [
        ["not_a_string", "instruction is int 123, not a string"],
        ["not_a_string", "text is int 456, not a string"],
    ]
    assert numbers["row"]["instruction"] == 123  # the row as given, for the user to fix
    escape = next(item for item in bad if item.get("path", "").endswith("escape.wav"))
    assert "not inside --audio_dir" in escape["problems"][0][1] and len(escape["problems"]) == 1
    summary = json.loads((output / "prepare_summary.json").read_text(encoding="utf-8"))
    assert summary["rows_rejected"] == len(BAD_REASONS) + 1
    assert summary["rows_kept"] + summary["rows_rejected"] == summary["rows_total"]


@pytest.mark.parametrize(
    "path, inside",
    [
        ("clips/a.wav", True),
        ("./clips/../clips/a.wav", True),
        ("a..b.wav", True),
        ("../a.wav", False),
        ("clips/../../a.wav", False),
        ("/etc/passwd", False),
        ("..", False),
    ],
)
def test_paths_must_stay_inside_the_audio_dir(corpus, tmp_path, path, inside):
    args = prepare_dataset.parse_args(
        ["--audio_dir", str(corpus), "--metadata", "m.jsonl", "--output_dir", "o"]
    )
    problems = []
    assert prepare_dataset.RowValidator(args, tmp_path)._check_path(path, problems) is inside
    assert [problem.reason for problem in problems] == ([] if inside else ["path_outside_audio_dir"])
    args.allow_paths_outside_audio_dir = True
    assert prepare_dataset.RowValidator(args, tmp_path)._check_path(path, []) is True


def test_paths_outside_the_audio_dir_are_kept_when_allowed(corpus, tmp_path):
    outside = tmp_path / "elsewhere.wav"
    sf.write(outside, tone(1.0), SAMPLING_RATE)
    metadata = tmp_path / "metadata.jsonl"
    metadata.write_text(json.dumps(row(str(outside))) + "\n", encoding="utf-8")
    args = ["--audio_dir", str(corpus), "--metadata", str(metadata), "--output_dir", str(tmp_path / "out")]
    assert prepare_dataset.main(prepare_dataset.parse_args(args)) == 1  # refused: no usable rows
    args = [*args, "--overwrite", "--allow_paths_outside_audio_dir"]
    assert prepare_dataset.main(prepare_dataset.parse_args(args)) == 0
    assert load_prepared_dataset(tmp_path / "out")["audio_path_absolute"] == [str(outside)]


def test_dataset_survives_moving(corpus, prepared, tmp_path):
    output, _ = prepared
    # Dataset and audio moved together: the dataset-relative path still works.
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved / corpus.name)
    moved_dataset = moved / output.parent.name / output.name  # same layout relative to each other
    shutil.copytree(output, moved_dataset)
    item = load_prepared_dataset(moved_dataset)[0]
    assert Path(resolve_audio_path(item, moved_dataset)).is_relative_to(moved)
    # Only the dataset moved (deep enough that its relative paths lead nowhere): the absolute path works.
    elsewhere = tmp_path / "x" / "y" / "z"
    assert Path(resolve_audio_path(item, elsewhere)).is_relative_to(corpus)
    # The audio moved alone: the caller names its new root.
    item = {**item, "audio_path_absolute": "/nonexistent.wav"}
    assert Path(resolve_audio_path(item, elsewhere, audio_root=moved / corpus.name)).is_relative_to(moved)
    with pytest.raises(FileNotFoundError, match="--audio_root"):
        resolve_audio_path(item, elsewhere)


def test_csv_metadata_and_existing_output(corpus, prepared, tmp_path, capsys):
    metadata = tmp_path / "metadata.csv"
    metadata.write_text(
        "path,instruction,text,language,task,speaker\n"
        "clips/a.wav,A calm woman speaks.,Hello there.,en,speech,spk1\n"
        "clips/c.wav,Soft ambient pads.,,,music,\n"
        "clips/missing.wav,x,Hi.,en,speech,spk1\n",
        encoding="utf-8",
    )
    output = tmp_path / "csv_dataset"
    args = ["--audio_dir", str(corpus), "--metadata", str(metadata), "--output_dir", str(output)]
    assert prepare_dataset.main(prepare_dataset.parse_args(args)) == 0
    assert "kept: 2" in capsys.readouterr().out
    assert load_prepared_dataset(output)["speaker"] == ["spk1", ""]
    assert prepare_dataset.main(prepare_dataset.parse_args(args)) == 2  # refuses to overwrite silently
    assert prepare_dataset.main(prepare_dataset.parse_args([*args, "--overwrite"])) == 0
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.old"))


def write_tiny_text_encoder(folder: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "a calm woman man speaks soft ambient pads tone music the slowly".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)


def test_precompute_latents_and_instruction_embeddings(corpus, prepared, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from instructaudio_diffusers import AutoencoderKLMel, load_audio

    source, _ = prepared
    output = tmp_path / "dataset"
    shutil.copytree(source, output)
    torch.manual_seed(0)
    vae = AutoencoderKLMel(**TINY_VAE).eval()
    vae.save_pretrained(tmp_path / "vae")
    write_tiny_text_encoder(tmp_path / "encoder")

    args = prepare_dataset.parse_args(
        [
            "--output_dir",
            str(output),
            "--precompute_latents",
            "--vae",
            str(tmp_path / "vae"),
            "--precompute_instructions",
            "--text_encoder",
            str(tmp_path / "encoder"),
            "--num_proc",
            "2",
            "--map_batch_size",
            "2",
        ]
    )
    assert prepare_dataset.main(args) == 0
    dataset = load_prepared_dataset(output).with_format("numpy")
    assert set(good_paths(corpus)) == set(dataset["source_path"])
    item = dataset[0]
    audio, _ = load_audio(resolve_audio_path(item, output), SAMPLING_RATE)
    with torch.no_grad():
        posterior = vae.encode(vae.mel_spectrogram()(torch.from_numpy(audio))).latent_dist
    assert item["posterior_mean"].shape == (4, item["latent_frames"]) == tuple(posterior.mean.shape[1:])
    np.testing.assert_allclose(item["posterior_mean"], posterior.mean[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(item["posterior_std"], posterior.std[0].numpy(), rtol=1e-4)

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "encoder")
    encoder = AutoModel.from_pretrained(tmp_path / "encoder").eval()
    inputs = tokenizer([item["instruction"]], truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = encoder(**inputs).last_hidden_state[0].numpy()
    assert item["instruction_embeds"].shape == (item["instruction_length"], 8) == expected.shape
    np.testing.assert_allclose(item["instruction_embeds"], expected, atol=1e-5)
    # The side files survive the rewrite and the summary records what produced the cached columns.
    assert (output / "bad_rows.jsonl").read_text() == (source / "bad_rows.jsonl").read_text()
    summary = json.loads((output / "prepare_summary.json").read_text(encoding="utf-8"))
    assert summary["latents"]["vae_config"]["latent_channels"] == 4 and "instructions" in summary

    # Mean only: the std column goes away on a second pass.
    args = prepare_dataset.parse_args(
        [
            "--output_dir",
            str(output),
            "--precompute_latents",
            "--vae",
            str(tmp_path / "vae"),
            "--latents_mean_only",
        ]
    )
    assert prepare_dataset.main(args) == 0
    columns = load_prepared_dataset(output).column_names
    assert "posterior_mean" in columns and "posterior_std" not in columns and "instruction_embeds" in columns
