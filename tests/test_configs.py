"""Every shipped config under configs/ loads with the real trainer parser and the dataset schema, so a user who
copies one never meets an unknown key or a bad value at start-up (the model files need not exist here)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from anima_train_network import AnimaNetworkTrainer
from library.args import parse_args
from library.dataset.schema import load_dataset_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TRAIN_ARGS = sorted(CONFIGS.rglob("*train_args*.toml"))
DATASETS = sorted(CONFIGS.rglob("*dataset*.toml"))
ACCELERATE = sorted(CONFIGS.rglob("accelerate_*.yaml"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CONFIGS)) for p in paths]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return AnimaNetworkTrainer().setup_parser()


def test_the_expected_configs_exist() -> None:
    assert {p.parent.name for p in TRAIN_ARGS} == {"smoke", "character_lora_24gb", "style_lokr", "low_vram_12gb",
                                                  "multi_gpu"}
    assert len(ACCELERATE) == 2 and len(DATASETS) == len({p.parent for p in TRAIN_ARGS})
    assert {p.name for p in TRAIN_ARGS if p.parent.name == "multi_gpu"} == {"train_args.toml", "train_args_8gpu.toml"}


@pytest.mark.parametrize("path", TRAIN_ARGS, ids=_ids(TRAIN_ARGS))
def test_train_args_parse_and_point_to_a_shipped_dataset(parser: argparse.ArgumentParser, path: Path) -> None:
    args = parse_args(parser, ["--config_file", str(path)])
    assert args.pretrained_model_name_or_path and args.qwen3 and args.vae and args.output_dir
    assert (ROOT / args.dataset_config).resolve().parent == path.parent  # relative to the repo root
    assert args.seed is not None and args.network_module.startswith("networks.")


@pytest.mark.parametrize("path", DATASETS, ids=_ids(DATASETS))
def test_datasets_validate(path: Path) -> None:
    config = load_dataset_config(str(path))
    for dataset in config["datasets"]:
        assert dataset["bucket_reso_steps"] % 16 == 0  # Anima's bucket multiple
        assert dataset["subsets"]


def test_smoke_pair_targets_the_tiny_model(parser: argparse.ArgumentParser) -> None:
    args = parse_args(parser, ["--config_file", str(CONFIGS / "smoke/anima_10steps_train_args.toml")])
    assert args.pretrained_model_name_or_path == "tiny_anima/models/anima_tiny.safetensors"
    assert (args.qwen3, args.vae) == ("tiny_anima/models/qwen3_tiny", "tiny_anima/models/qwen_image_vae_tiny.safetensors")
    assert (args.max_train_steps, args.mixed_precision, args.output_dir) == (10, "no", "output/smoke")
    subset = load_dataset_config(str(ROOT / args.dataset_config))["datasets"][0]["subsets"][0]
    assert subset["image_dir"] == "tiny_anima/dataset"


def test_memory_choices(parser: argparse.ArgumentParser) -> None:
    """The per-folder promises of the README: what each recipe is for."""
    def load(name: str) -> argparse.Namespace:
        return parse_args(parser, ["--config_file", str(CONFIGS / name / "train_args.toml")])

    character = load("character_lora_24gb")
    assert (character.mixed_precision, character.optimizer_type, character.gradient_checkpointing) == (
        "bf16", "AdamW8bit", True)
    assert 16 <= character.network_dim <= 32 and character.cache_latents and character.cache_text_encoder_outputs
    assert (character.timestep_sampling, character.discrete_flow_shift) == ("sigmoid", 1.0)
    assert load("style_lokr").network_module == "networks.lokr_anima" and "factor=8" in load("style_lokr").network_args
    low = load("low_vram_12gb")
    assert low.fp8_base and low.gradient_checkpointing and low.blocks_to_swap
    assert low.optimizer_type in ("AdaFactor", "AdamW8bit")


@pytest.mark.parametrize("path", ACCELERATE, ids=_ids(ACCELERATE))
def test_accelerate_configs(path: Path) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    gpus = int(path.stem.removeprefix("accelerate_").removesuffix("gpu"))
    assert config["num_processes"] == gpus and config["num_machines"] == 1
    assert config["distributed_type"] == "MULTI_GPU"
    assert "Effective batch" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", TRAIN_ARGS, ids=_ids(TRAIN_ARGS))
def test_network_args_names_are_known_to_the_network(parser: argparse.ArgumentParser, path: Path) -> None:
    import importlib

    from library.metadata import parse_network_args

    args = parse_args(parser, ["--config_file", str(path)])
    importlib.import_module(args.network_module).check_network_args(parse_network_args(args.network_args))


@pytest.mark.parametrize("path", [p for p in TRAIN_ARGS if p.parent.name != "smoke"],
                         ids=_ids([p for p in TRAIN_ARGS if p.parent.name != "smoke"]))
def test_model_paths_are_where_the_quickstart_downloads_them(path: Path) -> None:
    """Caught: configs expecting models/anima-base-v1.0.safetensors while the quickstart's download writes
    models/split_files/diffusion_models/anima-base-v1.0.safetensors."""
    import toml

    config = toml.load(path)
    quickstart = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    for key in ("pretrained_model_name_or_path", "qwen3", "vae"):
        assert f'{key} = "{config[key]}"' in quickstart, f"{path.name}: {key} = {config[key]!r}"
