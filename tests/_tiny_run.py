"""Shared helpers for end-to-end tests: make the tiny model once, run the trainer in this process."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import toml
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from make_tiny_anima import make  # noqa: E402  (a script folder, not a package)


def tiny_model(root: Path) -> Path:
    """The tiny model folder (models, dataset, train_args.toml, dataset.toml) under `root`."""
    if not (root / "train_args.toml").exists():
        make(root, seed=0)
    return root


def one_image_dataset(tiny: Path, work: Path) -> Path:
    """A dataset.toml over a single image of the tiny dataset, batch 1, no bucketing surprises."""
    images = work / "one_image"
    images.mkdir(parents=True, exist_ok=True)
    source = sorted((tiny / "dataset").glob("*.png"))[0]
    shutil.copy(source, images / source.name)
    shutil.copy(source.with_suffix(".txt"), images / source.with_suffix(".txt").name)
    config = {"general": {"caption_extension": ".txt"},
              "datasets": [{"resolution": 64, "batch_size": 1, "enable_bucket": True, "min_bucket_reso": 32,
                            "max_bucket_reso": 128, "bucket_reso_steps": 16,
                            "subsets": [{"image_dir": str(images), "num_repeats": 1}]}]}
    path = work / "one_image.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def reset_accelerate() -> None:
    """accelerate keeps process-wide singletons; each in-process run starts from a clean slate."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def train(tiny: Path, output_dir: Path, *extra: str, dataset: Path | None = None) -> Path:
    """Run anima_train_network.main in this process; returns the output folder."""
    from anima_train_network import main

    reset_accelerate()
    argv = ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(output_dir), *extra]
    if dataset is not None:
        argv += ["--dataset_config", str(dataset)]
    try:
        main(argv)
    finally:
        reset_accelerate()
    return output_dir


def read_losses(output_dir: Path, name: str = "anima_tiny_lora") -> list[tuple[int, float]]:
    rows = (output_dir / f"{name}-loss.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [(int(step), float(loss)) for step, loss in (row.split(",") for row in rows)]


def state_dict_of(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
