"""Latent and text caches: written once, reused, rebuilt when stale, shared between processes, never decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dataset_util import make_args, make_folder, write_config
from PIL import Image
from safetensors import safe_open

from library.dataset import DatasetGroup, build_dataset_group
from library.errors import UserError

HEAD = ('[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\nbatch_size = 2\n'
        "enable_bucket = true\nmin_bucket_reso = 32\nmax_bucket_reso = 128\nbucket_reso_steps = 16\n")
IDENTITY = {"vae": "vae.safetensors:123:456", "dtype": "float32"}


class Encoder:
    """A stand-in VAE (8x average pooling) that counts the images it encodes."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.images += images.shape[0]
        return F.avg_pool2d(images, 8)


class TextEncoder:
    """A stand-in text encoder that records every caption it encodes."""

    def __init__(self) -> None:
        self.captions: list[str] = []

    def __call__(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        self.captions += captions
        return [{"ids": torch.tensor([len(c), sum(map(ord, c)) % 997], dtype=torch.int64),
                 "hidden": torch.full((2, 4), float(len(c)))} for c in captions]


def subset(folder: Path, extra: str = "") -> str:
    return f'[[datasets.subsets]]\nimage_dir = "{folder.as_posix()}"\n{extra}\n'


def build(tmp_path: Path, text: str) -> DatasetGroup:
    return build_dataset_group(make_args(dataset_config=str(write_config(tmp_path, text))))


def noise_image(path: Path, size=(64, 64), seed=0) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = make_folder(tmp_path / "img", 3)
    for i in range(3):
        noise_image(folder / f"img{i}.png", seed=i)
    return folder


def test_latents_written_once_then_reused(tmp_path, folder):
    encoder = Encoder()
    build(tmp_path, HEAD + subset(folder)).cache_latents(encoder, IDENTITY, to_disk=True, batch_size=2)
    assert encoder.images == 3
    files = sorted(folder.glob("*_latents.safetensors"))
    assert [f.name for f in files] == [f"img{i}_0064x0064_latents.safetensors" for i in range(3)]
    with safe_open(str(files[0]), framework="pt") as handle:
        assert "latents_64x64" in set(handle.keys())
        assert '"vae.safetensors:123:456"' in handle.metadata()["identity"]
    again = Encoder()
    build(tmp_path, HEAD + subset(folder)).cache_latents(again, IDENTITY, to_disk=True, batch_size=2)
    assert again.images == 0


def test_suffix_and_cache_dir(tmp_path, folder):
    cache = tmp_path / "cache"
    build(tmp_path, HEAD + subset(folder)).cache_latents(Encoder(), IDENTITY, to_disk=True, batch_size=1,
                                                         suffix="_anima", cache_dir=str(cache))
    assert sorted(p.name for p in cache.iterdir())[0] == "img0_0064x0064_anima_latents.safetensors"
    assert not list(folder.glob("*.safetensors"))


def test_stale_identity_or_image_is_rebuilt(tmp_path, folder):
    build(tmp_path, HEAD + subset(folder)).cache_latents(Encoder(), IDENTITY, to_disk=True, batch_size=2)
    other = Encoder()
    build(tmp_path, HEAD + subset(folder)).cache_latents(other, {**IDENTITY, "vae": "other"}, True, 2)
    assert other.images == 3
    noise_image(folder / "img1.png", seed=42)
    stat = (folder / "img1.png").stat()
    os.utime(folder / "img1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = Encoder()
    build(tmp_path, HEAD + subset(folder)).cache_latents(changed, {**IDENTITY, "vae": "other"}, True, 2)
    assert changed.images == 1


def test_new_bucket_is_added_to_the_same_file(tmp_path, folder):
    build(tmp_path, HEAD + subset(folder)).cache_latents(Encoder(), IDENTITY, True, 2)
    bigger = HEAD.replace("resolution = 64", "resolution = 96")
    encoder = Encoder()
    build(tmp_path, bigger + subset(folder)).cache_latents(encoder, IDENTITY, True, 2)
    assert encoder.images == 3
    with safe_open(str(folder / "img0_0064x0064_latents.safetensors"), framework="pt") as handle:
        assert {"latents_64x64", "latents_96x96"} <= set(handle.keys())


def test_loader_never_decodes_cached_images(tmp_path, folder, monkeypatch):
    group = build(tmp_path, HEAD + subset(folder, "flip_aug = true\nnum_repeats = 4"))
    encoder = Encoder()
    group.cache_latents(encoder, IDENTITY, to_disk=True, batch_size=4)
    assert encoder.images == 6  # 3 images + their flipped copies
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    for epoch in (1, 2):
        group.set_epoch(epoch)
        for i in range(len(group)):
            batch = group[i]
            assert batch["images"] is None and batch["latents"].shape[1:] == (3, 8, 8)
    assert opened == []


def test_flipped_latent_is_the_encoding_of_the_flipped_image(tmp_path, folder):
    group = build(tmp_path, HEAD + subset(folder, "flip_aug = true\nnum_repeats = 8"))
    group.cache_latents(Encoder(), IDENTITY, to_disk=False, batch_size=2)
    reference = build(tmp_path, HEAD + subset(folder, "flip_aug = true\nnum_repeats = 8"))
    flips = set()
    for i in range(len(group)):
        cached, raw = group[i], reference[i]
        assert cached["flipped"] == raw["flipped"] and cached["image_keys"] == raw["image_keys"]
        assert torch.allclose(cached["latents"], F.avg_pool2d(raw["images"], 8), atol=1e-5)
        flips.update(cached["flipped"])
    assert flips == {True, False}
    assert not list(folder.glob("*.safetensors"))  # RAM mode writes nothing


def test_alpha_mask_is_cached(tmp_path, monkeypatch):
    folder = tmp_path / "a"
    folder.mkdir()
    rgba = np.full((64, 64, 4), 255, dtype=np.uint8)
    rgba[:32, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "x.png")
    group = build(tmp_path, HEAD + subset(folder, "alpha_mask = true"))
    group.cache_latents(Encoder(), IDENTITY, to_disk=True, batch_size=1)
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("decoded a cached image"))
    mask = group[0]["alpha_masks"][0]
    assert mask[:32].max() == 0 and mask[32:].min() == 1


def test_multi_process_share_split(tmp_path, folder):
    text = HEAD + subset(folder)
    rank0, rank1 = build(tmp_path, text), build(tmp_path, text)
    enc0, enc1 = Encoder(), Encoder()
    rank0.cache_latents(enc0, IDENTITY, True, 1, process_index=0, num_processes=2)
    assert enc0.images == 2  # files 0 and 2
    with pytest.raises(UserError, match="img1_0064x0064_latents.safetensors"):
        rank0.reload_caches()  # rank 1 has not written its share yet
    rank1.cache_latents(enc1, IDENTITY, True, 1, process_index=1, num_processes=2, barrier=lambda: None)
    assert enc1.images == 1
    rank0.reload_caches()
    assert torch.equal(rank0[0]["latents"], rank1[0]["latents"])


def test_text_cache_once_with_empty_caption(tmp_path, folder):
    (folder / "img2.txt").write_text("other caption", encoding="utf-8")
    text = HEAD + subset(folder, 'caption_prefix = "sks"\ncaption_dropout_rate = 0.5\nnum_repeats = 10')
    encoder = TextEncoder()
    group = build(tmp_path, text)
    group.cache_text(encoder, IDENTITY, to_disk=True, batch_size=2)
    assert sorted(encoder.captions) == ["", "sks a, b, c", "sks other caption"]
    files = list(folder.glob("te_*.safetensors"))
    assert len(files) == 3
    dropped = 0
    for i in range(len(group)):
        batch = group[i]
        for caption, tensors in zip(batch["captions"], batch["text"], strict=True):
            assert tensors["hidden"][0, 0] == len(caption)  # the cached encoding of exactly this caption
            dropped += caption == ""
    assert dropped > 0
    again = TextEncoder()
    build(tmp_path, text).cache_text(again, IDENTITY, to_disk=True, batch_size=2)
    assert again.captions == []


def test_text_cache_rebuilt_for_changed_caption_only(tmp_path, folder):
    text = HEAD + subset(folder)
    build(tmp_path, text).cache_text(TextEncoder(), IDENTITY, to_disk=True, batch_size=8)
    (folder / "img0.txt").write_text("edited", encoding="utf-8")
    encoder = TextEncoder()
    build(tmp_path, text).cache_text(encoder, IDENTITY, to_disk=True, batch_size=8)
    assert encoder.captions == ["edited"]
    other = TextEncoder()
    build(tmp_path, text).cache_text(other, {"te": "another"}, to_disk=True, batch_size=8)
    assert sorted(other.captions) == ["", "a, b, c", "edited"]


def test_text_cache_in_ram_and_split(tmp_path, folder):
    (folder / "img1.txt").write_text("second", encoding="utf-8")
    text = HEAD + subset(folder)
    ram = TextEncoder()
    group = build(tmp_path, text)
    group.cache_text(ram, IDENTITY, to_disk=False, batch_size=8, process_index=1, num_processes=2)
    assert sorted(ram.captions) == ["", "a, b, c", "second"]  # RAM: every process encodes everything
    assert not list(folder.glob("te_*"))
    enc0, enc1 = TextEncoder(), TextEncoder()
    build(tmp_path, text).cache_text(enc0, IDENTITY, True, 8, process_index=0, num_processes=2)
    build(tmp_path, text).cache_text(enc1, IDENTITY, True, 8, process_index=1, num_processes=2)
    assert sorted(enc0.captions + enc1.captions) == ["", "a, b, c", "second"] and enc0.captions and enc1.captions
