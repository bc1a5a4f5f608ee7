"""Swapped or mismatched model files fail at start-up from their headers, before the dataset or DiT loads."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
import torch
from _tiny_run import tiny_model
from make_tiny_anima import qwen3_config
from safetensors.torch import save_file
from transformers import Qwen3Model

from anima_train_network import check_model_files
from library.errors import ConfigError, ModelFileError


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny")) / "models"


def paths(models: Path, **changes: str) -> Namespace:
    base = {"pretrained_model_name_or_path": str(models / "anima_tiny.safetensors"),
            "vae": str(models / "qwen_image_vae_tiny.safetensors"), "qwen3": str(models / "qwen3_tiny.safetensors")}
    return Namespace(**(base | changes))


def test_the_tiny_model_files_pass(models: Path) -> None:
    check_model_files(paths(models))


@pytest.mark.parametrize("option,file,found", [
    ("vae", "anima_tiny.safetensors", "Anima DiT"),
    ("qwen3", "qwen_image_vae_tiny.safetensors", "VAE"),
    ("pretrained_model_name_or_path", "qwen3_tiny.safetensors", "Qwen3"),
])
def test_a_swapped_file_names_the_option_and_what_it_is(models: Path, option: str, file: str, found: str) -> None:
    with pytest.raises(ModelFileError) as info:
        check_model_files(paths(models, **{option: str(models / file)}))
    assert f"--{option}" in str(info.value) and found in str(info.value) and file in str(info.value)


def test_a_qwen3_of_another_width_is_refused(models: Path, tmp_path: Path) -> None:
    config = qwen3_config(hidden=32, intermediate=64, layers=1, heads=2, kv_heads=1, head_dim=16)
    state = {f"model.{key}": value.contiguous() for key, value in Qwen3Model(config).state_dict().items()}
    wide = tmp_path / "qwen3_wide.safetensors"
    save_file({key: value.to(torch.float16) for key, value in state.items()}, str(wide))
    with pytest.raises(ConfigError, match=r"reads \[16\]-wide Qwen states but the Qwen3 given is \[32\] wide"):
        check_model_files(paths(models, qwen3=str(wide)))
