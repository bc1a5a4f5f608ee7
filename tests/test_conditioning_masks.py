"""conditioning_data_dir + --masked_loss: one mask per image (red channel / 255), aligned through every crop and flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dataset_util import make_args, write_config
from PIL import Image

from library.dataset import DatasetGroup, build_dataset_group
from library.errors import ConfigError

BUCKETED = ('[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\nbatch_size = 2\n'
            "enable_bucket = true\nmin_bucket_reso = 32\nmax_bucket_reso = 128\nbucket_reso_steps = 16\n")
UNBUCKETED = '[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\nbatch_size = 1\n'
IDENTITY = {"vae": "vae.safetensors:1:2", "dtype": "float32"}


def subset(folder: Path, masks: Path, extra: str = "") -> str:
    return (f'[[datasets.subsets]]\nimage_dir = "{folder.as_posix()}"\n'
            f'conditioning_data_dir = "{masks.as_posix()}"\n{extra}\n')


def build(tmp_path: Path, text: str, **args) -> DatasetGroup:
    args.setdefault("masked_loss", True)
    return build_dataset_group(make_args(dataset_config=str(write_config(tmp_path, text)), **args))


def noise(size: tuple[int, int], seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)


def pair(folder: Path, masks: Path, name: str, size: tuple[int, int], seed: int, mask_ext: str = ".png") -> None:
    """The same picture as training image and as mask, so an aligned mask equals the image's red channel."""
    folder.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    pixels = noise(size, seed)
    Image.fromarray(pixels).save(folder / f"{name}.png")
    Image.fromarray(pixels).save(masks / f"{name}{mask_ext}")


def batches(group: DatasetGroup, epochs=(1, 2, 3)) -> list[dict]:
    out = []
    for epoch in epochs:
        group.set_epoch(epoch)
        out += [group[i] for i in range(len(group))]
    return out


@pytest.mark.parametrize("head,extra,sizes", [
    (BUCKETED, "flip_aug = true\nrandom_crop = true\nnum_repeats = 4", [(96, 64), (80, 120), (64, 64)]),
    (UNBUCKETED, "flip_aug = true\nface_crop_aug_range = [2.0, 4.0]\nnum_repeats = 4", [(300, 200)]),
], ids=["bucket-resize-random-crop-flip", "face-crop-flip"])
def test_mask_follows_the_image_through_resize_crop_and_flip(tmp_path, head, extra, sizes):
    names = ["face_150_100_60_60" if head is UNBUCKETED else f"img{i}" for i in range(len(sizes))]
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        pair(tmp_path / "img", tmp_path / "masks", name, size, seed=i, mask_ext=".bmp" if i == 1 else ".png")
    group = build(tmp_path, head + subset(tmp_path / "img", tmp_path / "masks", extra))
    flips = set()
    for batch in batches(group):
        red = (batch["images"][:, 0] + 1) / 2
        assert batch["alpha_masks"].shape == red.shape
        assert torch.allclose(batch["alpha_masks"], red, atol=1e-6)
        flips.update(batch["flipped"])
    assert flips == {True, False}


def test_missing_mask_names_the_image_and_the_folder(tmp_path):
    pair(tmp_path / "img", tmp_path / "masks", "a", (64, 64), seed=0)
    Image.fromarray(noise((64, 64), 1)).save(tmp_path / "img" / "lonely.png")
    with pytest.raises(ConfigError, match=r"missing conditioning data for 1 images.*lonely.png.*masks"):
        build(tmp_path, BUCKETED + subset(tmp_path / "img", tmp_path / "masks"))
    with pytest.raises(ConfigError, match=r"conditioning_data_dir '.*nowhere' not found"):
        build(tmp_path, BUCKETED + subset(tmp_path / "img", tmp_path / "nowhere"))


def test_conditioning_data_dir_needs_masked_loss_as_in_kohya(tmp_path):
    pair(tmp_path / "img", tmp_path / "masks", "a", (64, 64), seed=0)
    with pytest.raises(ConfigError, match=r"subsets\[0\]: key 'conditioning_data_dir'.*needs --masked_loss"):
        build(tmp_path, BUCKETED + subset(tmp_path / "img", tmp_path / "masks"), masked_loss=False)


def test_cli_conditioning_data_dir_is_the_fallback_with_masked_loss(tmp_path):
    pair(tmp_path / "train" / "2_sks", tmp_path / "masks", "a", (64, 64), seed=3)
    args = make_args(train_data_dir=str(tmp_path / "train"), resolution="64", masked_loss=True,
                     conditioning_data_dir=str(tmp_path / "masks"))
    batch = build_dataset_group(args)[0]
    assert torch.allclose(batch["alpha_masks"], (batch["images"][:, 0] + 1) / 2, atol=1e-6)
    args.masked_loss = False
    assert build_dataset_group(args)[0]["alpha_masks"] is None


class Encoder:
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, 8)


@pytest.mark.parametrize("to_disk", [False, True])
def test_cached_and_uncached_runs_give_the_same_masks(tmp_path, to_disk):
    for i, size in enumerate([(96, 64), (80, 120)]):
        pair(tmp_path / "img", tmp_path / "masks", f"img{i}", size, seed=i)
    rgba = noise((64, 64), 7, channels=4)  # alpha_mask too: the loss mask is alpha x conditioning mask
    rgba[:, :20, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "img" / "img2.png")
    Image.fromarray(noise((32, 32), 8)).save(tmp_path / "masks" / "img2.png")  # smaller: resized to the image
    text = BUCKETED + subset(tmp_path / "img", tmp_path / "masks", "flip_aug = true\nalpha_mask = true\n"
                             "num_repeats = 4")
    cached, plain = build(tmp_path, text), build(tmp_path, text)
    cached.cache_latents(Encoder(), IDENTITY, to_disk=to_disk, batch_size=2)
    flips = set()
    for a, b in zip(batches(cached), batches(plain), strict=True):
        assert a["latents"] is not None and b["images"] is not None and a["flipped"] == b["flipped"]
        assert torch.equal(a["alpha_masks"], b["alpha_masks"])
        flips.update(a["flipped"])
    assert flips == {True, False}
    masks = {Path(k).name: m for batch in batches(plain) for k, m in zip(batch["image_keys"],
                                                                            batch["alpha_masks"], strict=True)}
    assert masks["img2.png"][:, :20].max() == 0 or masks["img2.png"][:, -20:].max() == 0  # alpha still applies
