"""The training dataset: all `[[datasets]]` as one torch Dataset of pre-built, single-bucket batches.

The order of batches derives only from (seed, epoch), and every augmentation from (seed, epoch, the sample's draw
key), so a resumed run sees the same data, and the batch size does not change what an image is trained with. Use it with `DataLoader(group, batch_size=1, shuffle=False, collate_fn=lambda b: b[0])`
(the group shuffles itself in `set_epoch`); call `set_epoch` before each epoch's iteration.
"""

from __future__ import annotations

import logging
import random
from argparse import Namespace
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from library.dataset import caching
from library.dataset.blueprint import load_blueprint
from library.dataset.captions import is_dropped, item_rng, render_caption
from library.dataset.conditioning import cached_mask
from library.dataset.dataset import BucketDataset, Sample
from library.dataset.images import combine_masks, prepare_sample
from library.dataset.metadata import group_metadata
from library.errors import ConfigError

logger = logging.getLogger(__name__)


class DatasetGroup(Dataset):
    """`group[i]` is batch i of the current epoch, as a dict (see docs/dataset_config.md).

    `validation` is the group of images held out by `validation_split` (None without any): the same batch dicts,
    fixed at epoch 1, so every validation pass sees the same batches, captions and flips.
    """

    def __init__(self, datasets: list[BucketDataset], seed: int, validation: DatasetGroup | None = None) -> None:
        self.datasets = datasets
        self.seed = seed
        self.validation = validation
        self.epoch = 1
        self.current_step = 0
        self.max_train_steps = 0
        self.latent_cache = caching.LatentCache()
        self.text_cache = caching.TextCache()
        self._order: list[tuple[int, list[tuple[int, str]]]] = []
        self.set_epoch(1)

    # ---- order -------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Reorder for `epoch` (1-based) with `random.Random(seed + epoch)`; the same epoch gives the same order."""
        self.epoch = epoch
        rng = random.Random(self.seed + epoch)
        order = [(d, batch) for d, dataset in enumerate(self.datasets) for batch in dataset.batches(rng)]
        rng.shuffle(order)
        self._order = order

    def set_current_step(self, step: int) -> None:
        """For token warmup only (kohya's `current_step`)."""
        self.current_step = step

    def set_max_train_steps(self, steps: int) -> None:
        """For token_warmup_step < 1 (a fraction of the run)."""
        self.max_train_steps = steps

    def __len__(self) -> int:
        return len(self._order)

    # ---- one batch ---------------------------------------------------------------------------------
    def _samples(self, index: int) -> tuple[BucketDataset, list[Sample], list[str]]:
        """The batch's dataset, samples and their draw keys ("dataset:bucket:position", see `BucketDataset.batches`)."""
        dataset_index, members = self._order[index]
        dataset = self.datasets[dataset_index]
        return (dataset, [dataset.samples[m] for m, _ in members], [f"{dataset_index}:{key}" for _, key in members])

    def __getitem__(self, index: int) -> dict[str, Any]:
        dataset, samples, draw_keys = self._samples(index)
        captions, flipped, images, masks, latents, texts = [], [], [], [], [], []
        for sample, draw_key in zip(samples, draw_keys, strict=True):
            caption_rng = item_rng(self.seed, self.epoch, draw_key, "caption")
            image_rng = item_rng(self.seed, self.epoch, draw_key, "image")
            flip = sample.flip_aug and image_rng.random() < 0.5
            flipped.append(flip)
            dropped = is_dropped(sample.caption_options, self.epoch, caption_rng)
            captions.append("" if dropped else render_caption(sample.item.caption, sample.caption_options,
                                                              caption_rng, self.current_step, self.max_train_steps))
            if self.latent_cache.ready:
                latent, mask = self.latent_cache.get(sample, flip)
                if sample.item.mask_path is not None:
                    condition = cached_mask(sample.item, sample.item.mask_path, sample.placement, flip)
                    mask = combine_masks([m for m in (mask, condition) if m is not None])
                latents.append(latent)
                masks.append(mask)
            else:
                image, mask = prepare_sample(sample.item.path, sample.placement, flip, sample.color_aug, image_rng,
                                             sample.item.mask_path)
                images.append(image)
                masks.append(mask)
            if self.text_cache.ready:
                texts.append(self.text_cache.get(sample, dropped))
        use_masks = any(s.placement.alpha_mask or s.item.mask_path is not None for s in samples)
        return {
            "image_keys": [str(s.item.path) for s in samples],
            "draw_keys": draw_keys,
            "captions": captions,
            "images": torch.stack(images) if images else None,
            "latents": torch.stack(latents) if latents else None,
            "text": texts if self.text_cache.ready else None,
            "loss_weights": torch.tensor([s.loss_weight for s in samples], dtype=torch.float32),
            "alpha_masks": torch.stack([m if m is not None else torch.ones(s.placement.bucket[::-1])
                                        for m, s in zip(masks, samples, strict=True)]) if use_masks else None,
            "bucket_reso": samples[0].placement.bucket,
            "flipped": flipped,
            "network_multiplier": dataset.params.network_multiplier,
            "custom_attributes": [s.custom_attributes for s in samples],
        }

    # ---- facts for the trainer ---------------------------------------------------------------------
    def batch_shapes(self) -> set[tuple[int, int, int]]:
        """Every (batch size, bucket width, bucket height) a batch of training or validation can have."""
        shapes = set().union(*(dataset.batch_shapes() for dataset in self.datasets))
        return shapes | (self.validation.batch_shapes() if self.validation is not None else set())

    @property
    def num_train_images(self) -> int:
        return sum(d.num_train_images for d in self.datasets)

    @property
    def num_reg_images(self) -> int:
        return sum(d.num_reg_images for d in self.datasets)

    def all_samples(self) -> list[Sample]:
        return [s for d in self.datasets for s in d.samples]

    def bucket_table(self) -> str:
        return "\n".join(d.bucket_table() for d in self.datasets)

    def metadata(self) -> dict[str, str]:
        return group_metadata(self.datasets, {
            "ss_num_train_images": self.num_train_images, "ss_num_reg_images": self.num_reg_images,
            "ss_num_validation_images": self.validation.num_train_images if self.validation else 0,
            "ss_num_batches_per_epoch": len(self)})

    def latent_cache_blockers(self) -> list[str]:
        """Options that change the image every step, so its latents cannot be cached (a face crop draws its scale
        and offset every step; it only counts where it applies: bucketing off and face info in a file name)."""
        names = []
        for d in self.datasets:
            for s in d.subsets:
                names += [n for n, on in (("color_aug", s.color_aug), ("random_crop", s.random_crop)) if on]
        names += ["face_crop_aug_range" for s in self.all_samples() if s.placement.face is not None]
        return sorted(set(names))

    def text_cache_blockers(self) -> list[str]:
        """Options that change the caption text every step (caption dropout is not one: "" is cached too)."""
        return sorted({name for s in self.all_samples() for name in s.caption_options.per_step_features()})

    # ---- caches --------------------------------------------------------------------------------------
    def cache_latents(self, encode: Callable[[torch.Tensor], torch.Tensor], identity: dict[str, str], to_disk: bool,
                      batch_size: int, process_index: int = 0, num_processes: int = 1,
                      barrier: Callable[[], None] | None = None, suffix: str = "", cache_dir: str | None = None,
                      trust: bool = False) -> None:
        """Encode every (image, bucket) once (and its flipped copy with flip_aug); see docs/caches.md."""
        self.latent_cache = caching.LatentCache.build(self.all_samples(), encode, identity, to_disk, batch_size,
                                                      process_index, num_processes, suffix, cache_dir, trust)
        if barrier is not None:
            barrier()
            self.reload_caches()

    def cache_text(self, encode: Callable[[list[str]], list[dict[str, torch.Tensor]]], identity: dict[str, str],
                   to_disk: bool, batch_size: int, process_index: int = 0, num_processes: int = 1,
                   barrier: Callable[[], None] | None = None, suffix: str = "", cache_dir: str | None = None,
                   trust: bool = False) -> None:
        """Encode each distinct final caption (no per-step augmentation) and "" once."""
        self.text_cache = caching.TextCache.build(self.all_samples(), encode, identity, to_disk, batch_size,
                                                  process_index, num_processes, suffix, cache_dir, trust)
        if barrier is not None:
            barrier()
            self.reload_caches()

    def reload_caches(self) -> None:
        """After every process wrote its share: check that every disk cache file is there and valid."""
        self.latent_cache.reload()
        self.text_cache.reload()


def build_dataset_group(args: Namespace, reso_multiple: int = 16) -> DatasetGroup:
    """Read and check the whole dataset (config, folders, images, captions) before any model loads."""
    blueprint = load_blueprint(args)
    source = getattr(args, "dataset_config", None) or "command line dataset"
    seed = getattr(args, "seed", None)
    seed = 0 if seed is None else int(seed)
    datasets = [BucketDataset(params, str(source), reso_multiple, split_seed=seed) for params in blueprint]
    if not any(d.samples for d in datasets):
        empty = [folder for d in datasets for folder in d.empty_dirs]
        held = " (validation_split holds out every image; lower it)" if any(d.validation_items for d in datasets) else ""
        raise ConfigError("No data found. Please verify arguments (train_data_dir must be the parent of folders "
                          "with images)" + (f"; nothing usable in: {', '.join(empty)}" if empty else "") + held + ".")
    held_out = [v for v in (d.validation_dataset() for d in datasets) if v is not None]
    validation = DatasetGroup(held_out, seed) if held_out else None
    group = DatasetGroup([d for d in datasets if d.samples], seed, validation)
    logger.info("dataset buckets:\n%s", group.bucket_table())
    if validation is not None:
        logger.info("validation buckets:\n%s", validation.bucket_table())
    return group
