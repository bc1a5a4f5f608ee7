"""Small builders shared by the dataset tests: tiny images, caption files, dataset.toml files, CLI args."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from PIL import Image


def make_image(path: Path, size: tuple[int, int] = (64, 64), mode: str = "RGB", color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGBA" and len(color) == 3:
        color = (*color, 128)
    Image.new(mode, size, color).save(path)
    return path


def make_folder(folder: Path, count: int, size=(64, 64), caption: str | None = "a, b, c", ext: str = ".txt",
                prefix: str = "img") -> Path:
    for i in range(count):
        make_image(folder / f"{prefix}{i}.png", size)
        if caption is not None:
            (folder / f"{prefix}{i}{ext}").write_text(caption, encoding="utf-8")
    return folder


def write_config(tmp_path: Path, text: str, name: str = "dataset.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def make_args(**kwargs) -> Namespace:
    values = {"dataset_config": None, "train_data_dir": None, "reg_data_dir": None, "in_json": None, "seed": 1,
              "train_batch_size": None, "dataset_repeats": None, "resolution": None, "caption_extension": None,
              "prior_loss_weight": 1.0, "enable_bucket": None}
    values.update(kwargs)
    return Namespace(**values)
