"""face_crop_aug_range: kohya's face-centred random-scale crop with bucketing off, deterministic per item."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_util import make_args, make_image, write_config
from PIL import Image

from library.dataset import DatasetGroup, build_dataset_group
from library.dataset.face_crop import FaceCrop, face_from_name, face_geometry
from library.errors import ConfigError

UNBUCKETED = '[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\nbatch_size = 1\n'
BUCKETED = UNBUCKETED + "enable_bucket = true\nmin_bucket_reso = 32\nmax_bucket_reso = 128\nbucket_reso_steps = 16\n"
FACE = {"center": (200, 150), "size": (80, 60)}


def subset(folder: Path, extra: str = "") -> str:
    return f'[[datasets.subsets]]\nimage_dir = "{folder.as_posix()}"\n{extra}\n'


def build(tmp_path: Path, text: str, **args) -> DatasetGroup:
    return build_dataset_group(make_args(dataset_config=str(write_config(tmp_path, text)), **args))


def face_image(folder: Path, name: str = "face_200_150_80_60.png") -> Path:
    """A blue 400x300 picture with a red face box (80x60 around (200, 150)), named kohya's way."""
    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    pixels[..., 2] = 255
    pixels[120:180, 160:240] = (255, 0, 0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name)
    return folder / name


def all_images(group: DatasetGroup, epoch: int) -> list[torch.Tensor]:
    group.set_epoch(epoch)
    return [group[i]["images"] for i in range(len(group))]


def test_crop_contains_the_face_box_for_every_scale_draw():
    face = FaceCrop(FACE["center"], FACE["size"], (2.0, 4.0))
    scales = set()
    for seed in range(300):
        resized, box = face_geometry((400, 300), (64, 64), face, False, random.Random(seed))
        scale = resized[0] / 400
        assert 64 / 300 - 0.01 <= scale <= 64 / (80 * 2.0) + 0.01  # between "covers 64" and "face = 1/2 of 64"
        assert box[2] - box[0] == 64 and box[3] - box[1] == 64
        assert min(box[:2]) >= 0 and box[2] <= resized[0] and box[3] <= resized[1]
        left, top = (200 - 40) * scale, (150 - 30) * scale
        right, bottom = (200 + 40) * scale, (150 + 30) * scale
        assert box[0] <= left + 1 and right - 1 <= box[2] and box[1] <= top + 1 and bottom - 1 <= box[3]
        scales.add(round(scale, 4))
    assert len(scales) > 50  # a fresh random scale per draw (resized widths 85..160), not one fixed crop


def test_face_is_inside_every_training_crop_and_cli_range_is_the_fallback(tmp_path):
    face_image(tmp_path / "f")
    group = build(tmp_path, UNBUCKETED + subset(tmp_path / "f", "num_repeats = 4"), face_crop_aug_range="2.0,4.0")
    assert group.datasets[0].subsets[0].face_crop_aug_range == (2.0, 4.0)
    red_counts = set()
    for epoch in range(1, 4):
        for image in all_images(group, epoch):
            assert image.shape == (1, 3, 64, 64)
            red = (image[0, 0] > 0.5) & (image[0, 2] < -0.5)
            border = torch.cat([image[0, 0, 0], image[0, 0, -1], image[0, 0, :, 0], image[0, 0, :, -1]])
            assert red.sum() > 0 and border.max() < -0.9  # the whole face is in, with background around it
            red_counts.add(int(red.sum()))
    assert len(red_counts) > 3  # the face size changes with the drawn scale


def test_same_seed_epoch_index_gives_the_same_crop_and_global_rng_does_not_matter(tmp_path):
    face_image(tmp_path / "f")
    text = UNBUCKETED + subset(tmp_path / "f", "num_repeats = 3\nface_crop_aug_range = [2.0, 4.0]")
    first, second = build(tmp_path, text), build(tmp_path, text)
    random.seed(1)
    a = all_images(first, 2)
    random.seed(99)
    b = all_images(second, 2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    others = [all_images(first, epoch) for epoch in (3, 4, 5)]
    assert any(not torch.equal(x, y) for other in others for x, y in zip(a, other, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(all_images(first, 2), a, strict=True))  # going back: same again


def test_images_without_face_info_take_the_normal_path(tmp_path):
    folder = tmp_path / "n"
    make_image(folder / "plain.png", (64, 64), color=(10, 200, 30))
    make_image(folder / "my_cat_a_b_c.png", (64, 64), color=(10, 200, 30))  # five parts, not numbers
    assert face_from_name(folder / "my_cat_a_b_c.png", (2.0, 4.0)) is None
    assert face_from_name(folder / "x_0_10_20_20.png", (2.0, 4.0)) is None  # kohya: cx must be > 0
    group = build(tmp_path, UNBUCKETED + subset(folder, "face_crop_aug_range = [2.0, 4.0]"))
    for image in all_images(group, 1):
        assert torch.allclose(image[0, :, 5, 5], torch.tensor([10, 200, 30]) / 127.5 - 1)
    assert group.latent_cache_blockers() == []  # nothing is face-cropped, so latents can be cached
    make_image(tmp_path / "big" / "big.png", (96, 96))
    with pytest.raises(ConfigError, match=r"image too large.*big.png"):
        build(tmp_path, UNBUCKETED + subset(tmp_path / "big", "face_crop_aug_range = [2.0, 4.0]"))


def test_ignored_with_bucketing_with_a_warning(tmp_path, caplog):
    face_image(tmp_path / "f")
    plain = build(tmp_path, BUCKETED + subset(tmp_path / "f"))
    with caplog.at_level(logging.WARNING):
        cropped = build(tmp_path, BUCKETED + subset(tmp_path / "f", "face_crop_aug_range = [2.0, 4.0]"))
    assert "face_crop_aug_range is ignored because bucketing is enabled" in caplog.text
    assert all(torch.equal(x, y) for x, y in zip(all_images(plain, 1), all_images(cropped, 1), strict=True))
    assert cropped.latent_cache_blockers() == []


def test_latent_caching_is_blocked_while_face_crop_is_active(tmp_path):
    face_image(tmp_path / "f")
    group = build(tmp_path, UNBUCKETED + subset(tmp_path / "f", "face_crop_aug_range = [2.0, 4.0]\nflip_aug = true"))
    assert group.latent_cache_blockers() == ["face_crop_aug_range"]
