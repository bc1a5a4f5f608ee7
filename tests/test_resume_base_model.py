"""A state resumes only onto the DiT it was trained on (issue 16 point 2), compared by contents, VAE-independent.

"Another DiT" here is a hard case: the tiny DiT with only its llm_adapter weights nudged, in place, so the
header (keys, shapes, dtypes, offsets) stays byte-identical, as a fine-tune of the same model's adapter has it.

Breaks these tests catch (each was made once and failed them):
- library/file_fingerprint.py `SLICE_BYTES = 0` (hash of the header only): the nudged DiT resumes silently;
- a fingerprint of name + size + mtime (as the caches use): a byte-identical copy of the DiT is refused;
- library/anima/network_trainer.py `base_model_identity` adding the VAE: a resume with another VAE is refused;
- library/state.py `check_base_model` refusing an empty record: a state from before the record cannot resume;
- networks/_keys.py `module_names` without the bare `flat` name: the suggested warm start from the state's
  model.safetensors loads nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from _tiny_run import tiny_model, train
from safetensors.torch import load_file

from anima_train_network import AnimaNetworkTrainer
from library.args import parse_args
from library.errors import ConfigError

NAME = "anima_tiny_lora"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    work = tmp_path_factory.mktemp("base_model")
    out = train(tiny, work / "run", "--max_train_steps", "2", "--save_state")
    models = tiny / "models"
    return {"tiny": tiny, "work": work, "state": out / f"{NAME}-state",
            "other_dit": nudged_copy(models / "anima_tiny.safetensors", work / "other_dit.safetensors", "llm_adapter."),
            "other_vae": nudged_copy(models / "qwen_image_vae_tiny.safetensors", work / "other_vae.safetensors")}


def nudged_copy(source: Path, target: Path, only: str = "") -> Path:
    """`source` with each float weight whose key contains `only` + 1e-3, written in place: same header bytes."""
    data = source.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    header = json.loads(data[8:header_end])
    tensors = load_file(str(source))
    shutil.copy(source, target)
    with open(target, "r+b") as handle:
        for key, tensor in tensors.items():
            if tensor.is_floating_point() and only in key:
                handle.seek(header_end + header[key]["data_offsets"][0])
                handle.write((tensor + 1e-3).to(tensor.dtype).contiguous().view(torch.uint8).numpy().tobytes())
    assert target.read_bytes()[:header_end] == data[:header_end] and target.read_bytes() != data
    return target


def validate(setup: dict[str, Path], state: Path, *extra: str) -> None:
    """The start-up checks of a resumed run (what runs before anything loads)."""
    trainer = AnimaNetworkTrainer()
    args = parse_args(trainer.setup_parser(), ["--config_file", str(setup["tiny"] / "train_args.toml"),
                                               "--output_dir", str(setup["work"] / "resumed"),
                                               "--resume", str(state), *extra])
    trainer.validate(args)


def test_the_state_records_the_dit_it_was_trained_on(setup: dict[str, Path]) -> None:
    saved = json.loads((setup["state"] / "train_state.json").read_text(encoding="utf-8"))["base_model"]
    dit = setup["tiny"] / "models" / "anima_tiny.safetensors"
    assert set(saved) == {"DiT"}
    assert saved["DiT"]["file"] == str(dit.resolve()) and saved["DiT"]["bytes"] == dit.stat().st_size


def test_resume_onto_another_dit_is_refused_before_anything_loads(setup: dict[str, Path],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["work"] / "refused"
    with pytest.raises(SystemExit) as stopped:
        train(setup["tiny"], out, "--max_train_steps", "4", "--resume", str(setup["state"]),
              "--pretrained_model_name_or_path", str(setup["other_dit"]))
    said = capsys.readouterr().err
    assert stopped.value.code == 2
    assert str((setup["tiny"] / "models" / "anima_tiny.safetensors").resolve()) in said
    assert str(setup["other_dit"].resolve()) in said
    assert f"--network_weights {setup['state'] / 'model.safetensors'}" in said
    assert not out.exists()  # refused at the start-up checks, before even the output folder is made


def test_the_suggested_warm_start_loads_every_module(setup: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    train(setup["tiny"], setup["work"] / "warm", "--max_train_steps", "1", "--pretrained_model_name_or_path",
          str(setup["other_dit"]), "--network_weights", str(setup["state"] / "model.safetensors"))
    said = capsys.readouterr().out
    assert "warm start" in said and "'unmatched_keys': [], 'not_in_file': []" in said


def test_a_copy_of_the_same_dit_and_another_vae_resume(setup: dict[str, Path]) -> None:
    copy = shutil.copy(setup["tiny"] / "models" / "anima_tiny.safetensors", setup["work"] / "renamed_dit.safetensors")
    validate(setup, setup["state"], "--pretrained_model_name_or_path", str(copy))
    validate(setup, setup["state"], "--vae", str(setup["other_vae"]))
    with pytest.raises(ConfigError, match="whose contents differ"):
        validate(setup, setup["state"], "--pretrained_model_name_or_path", str(setup["other_dit"]))


def test_an_old_state_without_the_record_resumes_with_a_warning(setup: dict[str, Path], tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    old = shutil.copytree(setup["state"], tmp_path / f"{NAME}-state")
    info = old / "train_state.json"
    info.write_text(json.dumps({k: v for k, v in json.loads(info.read_text()).items() if k != "base_model"}))
    with caplog.at_level(logging.WARNING):
        validate(setup, old, "--pretrained_model_name_or_path", str(setup["other_dit"]))
    assert "cannot be checked" in caplog.text and str(old) in caplog.text
