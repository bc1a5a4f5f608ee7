"""Shared helpers for end-to-end tests: make the tiny model once, run the trainer in this process."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

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
    return images_dataset(tiny, work, 1, "one_image")


def images_dataset(tiny: Path, work: Path, count: int, name: str) -> Path:
    """A dataset.toml `<work>/<name>.toml` over the first `count` images of the tiny dataset, batch 1."""
    images = work / name
    images.mkdir(parents=True, exist_ok=True)
    for source in sorted((tiny / "dataset").glob("*.png"))[:count]:
        shutil.copy(source, images / source.name)
        shutil.copy(source.with_suffix(".txt"), images / source.with_suffix(".txt").name)
    config = {"general": {"caption_extension": ".txt"},
              "datasets": [{"resolution": 64, "batch_size": 1, "enable_bucket": True, "min_bucket_reso": 32,
                            "max_bucket_reso": 128, "bucket_reso_steps": 16,
                            "subsets": [{"image_dir": str(images), "num_repeats": 1}]}]}
    path = work / f"{name}.toml"
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


def flip_middle(data: bytes) -> bytes:
    """`data` with its middle byte inverted: inside a weight file's tensor bytes, where only a checksum can tell."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def read_losses(output_dir: Path, name: str = "anima_tiny_lora") -> list[tuple[int, float]]:
    rows = (output_dir / f"{name}-loss.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [(int(step), float(loss)) for step, loss in (row.split(",") for row in rows)]


def state_dict_of(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def fixed_eval_loss(tiny: Path, image: Path, caption: str, lora: Path | None = None) -> float:
    """Flow-matching loss on one image at 8 fixed sigmas (0.1..0.9) with fixed noise, with `lora` applied if given:
    a before/after measure free of the training run's own timestep and noise sampling."""
    import numpy as np
    from PIL import Image

    from library.anima.conditioning import build_context, collate_text
    from library.anima.flow import noisy_input, velocity_target
    from library.anima.loading import load_anima_dit
    from library.anima.text import AnimaTextEncoder
    from library.anima.tokenizers import load_t5_tokenizer
    from library.anima.vae import AnimaVAE
    from networks import lora_anima

    dit = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    if lora is not None:
        network, _ = lora_anima.create_network_from_weights(1.0, str(lora), None, [], dit)
        network.apply_to([], dit, False, True)
        network.load_weights(str(lora))
    vae = AnimaVAE.load(tiny / "models" / "qwen_image_vae_tiny.safetensors")
    encoder = AnimaTextEncoder.load(tiny / "models" / "qwen3_tiny.safetensors",
                                    t5_tokenizer=load_t5_tokenizer(tiny / "models" / "t5_tokenizer"))
    pixels = torch.from_numpy(np.asarray(Image.open(image).convert("RGB"), dtype=np.float32))
    pixels = (pixels / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        latents = vae.encode(pixels).float().repeat(8, 1, 1, 1)
        context = build_context(dit.llm_adapter, collate_text(encoder.encode([caption] * 8)))
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(123))
        sigmas = torch.linspace(0.1, 0.9, 8)
        pred = dit(noisy_input(latents, noise, sigmas).unsqueeze(2), sigmas, context).squeeze(2)
        return float(torch.mean((pred - velocity_target(latents, noise)) ** 2))


def forbid_model_loads(monkeypatch: Any) -> None:
    """`load_target_model` fails the test: a check meant for start-up that comes too late (or never) fails it."""
    from anima_train_network import AnimaNetworkTrainer

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the models started loading before the bad input was refused")

    monkeypatch.setattr(AnimaNetworkTrainer, "load_target_model", refuse)


def validate(tiny: Path, out: Path, *extra: str) -> None:
    """Only the trainer's start-up checks (`NetworkTrainer.validate`) on the tiny model's train args + `extra`."""
    from anima_train_network import AnimaNetworkTrainer
    from library.args import parse_args

    trainer = AnimaNetworkTrainer()
    args = parse_args(trainer.setup_parser(), ["--config_file", str(tiny / "train_args.toml"),
                                               "--output_dir", str(out), *extra])
    trainer.validate(args)
