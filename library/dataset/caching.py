"""Filling and reading the latent and text caches for a dataset group (the file formats live in library/cache/).

With several processes and disk caches, process r encodes only files r, r + N, ...; after a barrier every process
checks and reads every file (`reload`). RAM caches cannot be shared, so each process encodes everything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from library.cache import latents as latent_files
from library.cache import text as text_files
from library.dataset.captions import static_caption
from library.dataset.dataset import Sample
from library.dataset.images import Placement, fit_to_bucket, load_pixels, mask_tensor, to_tensor
from library.errors import ConfigError, UserError

logger = logging.getLogger(__name__)
Key = tuple[str, tuple[int, int]]


def check_latent_cache_names(samples: list[Sample], suffix: str, cache_dir: str | None = None) -> None:
    """Cache files are named by the image's stem and size, as kohya names them: `a.png` and `a.jpg` of one size would
    share one file and each train on the other's latents. Refused before any model loads."""
    owners: dict[Path, Path] = {}
    for sample in samples:
        image = sample.item.path
        file = latent_files.latent_cache_path(image, sample.item.size, suffix, cache_dir)
        other = owners.setdefault(file, image)
        if other != image:
            raise ConfigError(f"{other} and {image} would share the latent cache file {file.name} (cache files are "
                              "named by the image name without its extension). Rename one of them; note that both "
                              f"also read the caption file {image.stem}.<caption_extension>.")


def progress(total: int, unit: str, rank: int) -> tqdm:
    """Counts and ETA for a caching pass, on process 0 (a VAE in bf16 on a CPU took 8 silent minutes for 4 images).
    Nothing to encode shows no bar."""
    return tqdm(total=total, desc=f"caching {unit}s", unit=unit, disable=rank != 0 or not total)


class LatentCache:
    """Latents per (image, bucket): in RAM, or as files read on demand."""

    def __init__(self) -> None:
        self.ready = False
        self.specs: dict[Key, latent_files.LatentSpec] = {}
        self.files: dict[Key, Path] = {}
        self.images: dict[Key, Path] = {}
        self.memory: dict[Key, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = {}
        self.identity: dict[str, str] = {}

    @staticmethod
    def key(sample: Sample) -> Key:
        return str(sample.item.path), sample.placement.bucket

    @classmethod
    def build(cls, samples: list[Sample], encode: Callable[[torch.Tensor], torch.Tensor], identity: dict[str, str],
              to_disk: bool, batch_size: int, rank: int, world: int, suffix: str, cache_dir: str | None,
              trust: bool) -> LatentCache:
        cache = cls()
        cache.identity = identity
        for sample in samples:
            key = cls.key(sample)
            old = cache.specs.get(key)
            p = sample.placement
            cache.specs[key] = latent_files.LatentSpec(p.bucket, p.resized, p.interpolation,
                                                       sample.flip_aug or (old is not None and old.flip),
                                                       p.alpha_mask or (old is not None and old.alpha))
            cache.images[key] = sample.item.path
            if to_disk:
                cache.files[key] = latent_files.latent_cache_path(sample.item.path, sample.item.size, suffix,
                                                                  cache_dir)
        todo = list(cache.specs)
        if to_disk:
            check_latent_cache_names(samples, suffix, cache_dir)
            ordered = sorted(set(cache.files.values()))
            mine = {f for i, f in enumerate(ordered) if i % world == rank}
            todo = [k for k in todo if cache.files[k] in mine and not latent_files.is_valid(
                cache.files[k], cache.images[k], identity, cache.specs[k], trust)]
        logger.info("latents to encode: %d of %d (process %d of %d)", len(todo), len(cache.specs), rank, world)
        with progress(len(todo), "latent", rank) as bar:
            cache._encode(todo, encode, batch_size, to_disk, bar)
        cache.ready = True
        if world == 1:
            cache.reload()
        return cache

    def _encode(self, keys: list[Key], encode: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                to_disk: bool, bar: tqdm) -> None:
        groups: dict[tuple, list[Key]] = {}
        for key in keys:
            spec = self.specs[key]
            groups.setdefault((spec.bucket, spec.flip), []).append(key)
        for group_key in sorted(groups):
            members = groups[group_key]
            for start in range(0, len(members), max(batch_size, 1)):
                chunk = members[start:start + max(batch_size, 1)]
                self._encode_chunk(chunk, encode, to_disk)
                bar.update(len(chunk))

    def _encode_chunk(self, keys: list[Key], encode: Callable[[torch.Tensor], torch.Tensor], to_disk: bool) -> None:
        images, masks = [], []
        for key in keys:
            spec = self.specs[key]
            placement = _placement(spec)
            rgb, alpha = load_pixels(self.images[key], spec.alpha)
            rgb, alpha, _ = fit_to_bucket(rgb, alpha, placement, None)
            images.append(to_tensor(rgb))
            masks.append(mask_tensor(alpha) if alpha is not None else None)
        batch = torch.stack(images)
        latents = encode(batch).detach().float().cpu()
        flipped = encode(batch.flip(-1)).detach().float().cpu() if self.specs[keys[0]].flip else None
        for i, key in enumerate(keys):
            entry = (latents[i].clone(), flipped[i].clone() if flipped is not None else None, masks[i])
            if to_disk:
                latent_files.save_latents(self.files[key], self.images[key], self.identity, self.specs[key], *entry)
            else:
                self.memory[key] = entry

    def reload(self) -> None:
        """Disk mode: every file (this process's and the others') must now be valid."""
        if not self.ready or not self.files:
            return
        for key, file in self.files.items():
            if not latent_files.is_valid(file, self.images[key], self.identity, self.specs[key], trust=True):
                raise UserError(f"latent cache file {file} is missing or incomplete after caching (did another "
                                "process fail?). Delete it and run again.")

    def get(self, sample: Sample, flip: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = self.key(sample)
        if key in self.memory:
            latents, flipped, mask = self.memory[key]
            return (flipped if flip else latents), (mask.flip(-1) if flip and mask is not None else mask)
        latents, mask = latent_files.load_latents(self.files[key], self.specs[key], flip)
        return latents, (mask.flip(-1) if flip and mask is not None else mask)


def _placement(spec: latent_files.LatentSpec) -> Placement:
    return Placement(spec.bucket, spec.resized, spec.interpolation, False, spec.alpha)


class TextCache:
    """Text-encoder outputs per distinct caption (plus "" for dropped captions)."""

    def __init__(self) -> None:
        self.ready = False
        self.files: dict[str, Path] = {}
        self.memory: dict[str, dict[str, torch.Tensor]] = {}
        self.identity: dict[str, str] = {}

    @classmethod
    def build(cls, samples: list[Sample], encode: Callable[[list[str]], list[dict[str, torch.Tensor]]],
              identity: dict[str, str], to_disk: bool, batch_size: int, rank: int, world: int, suffix: str,
              cache_dir: str | None, trust: bool) -> TextCache:
        cache = cls()
        cache.identity = identity
        folders: dict[str, Path] = {"": Path(cache_dir) if cache_dir else samples[0].item.path.parent}
        for sample in samples:
            caption = static_caption(sample.item.caption, sample.caption_options)
            folders.setdefault(caption, Path(cache_dir) if cache_dir else sample.item.path.parent)
        captions = sorted(folders)
        todo = captions
        if to_disk:
            cache.files = {c: text_files.text_cache_path(folders[c], c, identity, suffix) for c in captions}
            todo = [c for i, c in enumerate(captions)
                    if i % world == rank and not text_files.is_valid(cache.files[c], c, identity, trust)]
        logger.info("captions to encode: %d of %d (process %d of %d)", len(todo), len(captions), rank, world)
        step = max(batch_size, 1)
        with progress(len(todo), "caption", rank) as bar:
            for start in range(0, len(todo), step):
                chunk = todo[start:start + step]
                outputs = encode(chunk)
                if len(outputs) != len(chunk):
                    raise RuntimeError(f"text encoder returned {len(outputs)} results for {len(chunk)} captions")
                for caption, tensors in zip(chunk, outputs, strict=True):
                    tensors = {k: v.detach().cpu() for k, v in tensors.items()}
                    if to_disk:
                        text_files.save_text(cache.files[caption], caption, identity, tensors)
                    else:
                        cache.memory[caption] = tensors
                bar.update(len(chunk))
        cache.ready = True
        if world == 1:
            cache.reload()
        return cache

    def reload(self) -> None:
        if not self.ready:
            return
        for caption, file in self.files.items():
            if not text_files.is_valid(file, caption, self.identity):
                raise UserError(f"text cache file {file} is missing or stale after caching (did another process "
                                "fail?). Delete it and run again.")

    def get(self, sample: Sample, dropped: bool) -> dict[str, torch.Tensor]:
        caption = "" if dropped else static_caption(sample.item.caption, sample.caption_options)
        if caption in self.memory:
            return self.memory[caption]
        return text_files.load_text(self.files[caption])
