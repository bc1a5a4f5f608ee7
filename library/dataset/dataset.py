"""One `[[datasets]]`: its images, their buckets, and the batches cut from each bucket.

Each dataset keeps its own resolution, batch size and buckets (kohya's behaviour); the group concatenates them.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from library.dataset.blueprint import DatasetParams
from library.dataset.buckets import BucketManager, adjust_min_max, check_bucket_steps, format_bucket_table
from library.dataset.captions import CaptionOptions
from library.dataset.conditioning import attach_masks
from library.dataset.face_crop import FaceCrop, face_from_name
from library.dataset.images import Placement
from library.dataset.json_captions import flat_text
from library.dataset.sources import ImageItem, balance_regularization, dreambooth_items, finetune_items
from library.dataset.split import split_items, validation_fraction
from library.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """An image placed in its bucket, with the subset settings the loader needs."""

    item: ImageItem
    placement: Placement
    caption_options: CaptionOptions
    flip_aug: bool
    color_aug: bool
    loss_weight: float
    ar_error: float = 0.0
    custom_attributes: dict = field(default_factory=dict)


class BucketDataset:
    """Resolves one dataset's items and buckets; `batches(rng)` cuts them into batches that never mix buckets.

    With `validation_split`, each non-reg subset's held-out images go to `validation_items` (not trained on);
    `validation_dataset()` makes them a dataset of their own with the same settings.
    """

    def __init__(self, params: DatasetParams, source: str, reso_multiple: int, split_seed: int = 0,
                 held_out: list[ImageItem] | None = None) -> None:
        """`split_seed` shuffles the split when `validation_seed` is unset; `held_out` builds a validation dataset
        from items already read (nothing is read or checked again)."""
        self.params, self.source, self.reso_multiple = params, source, reso_multiple
        self.is_validation = held_out is not None
        self.where = f"{source}: datasets[{params.index}]" + (" (validation)" if self.is_validation else "")
        self.subsets = params.subsets
        self.empty_dirs: list[str] = []
        self.active_subsets: list[int] = []  # subsets not ignored (repeats < 1, duplicate, empty)
        self.samples: list[Sample] = []
        self.validation_items: list[ImageItem] = []
        self.num_train_images = 0
        self.num_reg_images = 0
        if held_out is not None:
            self.active_subsets = sorted({item.subset for item in held_out})
            self.num_train_images = len(held_out)
            self.items = held_out
            self._place()
            return
        self._check(reso_multiple)
        self._load(split_seed)

    def validation_dataset(self) -> BucketDataset | None:
        """The held-out images as their own dataset (same resolution, buckets, batch size), or None."""
        if not self.validation_items:
            return None
        return BucketDataset(self.params, self.source, self.reso_multiple, held_out=self.validation_items)

    def _check(self, reso_multiple: int) -> None:
        p = self.params
        if p.resolution is None:
            raise ConfigError(f"{self.where}: resolution is required: set resolution = 1024 in [general] or "
                              "[[datasets]], or pass --resolution.")
        if p.enable_bucket:
            check_bucket_steps(p.bucket_reso_steps, reso_multiple, self.where)
            if not p.bucket_no_upscale:
                p.min_bucket_reso, p.max_bucket_reso = adjust_min_max(
                    p.resolution, p.min_bucket_reso, p.max_bucket_reso, p.bucket_reso_steps, self.where)
            else:
                logger.warning("%s: min_bucket_reso and max_bucket_reso are ignored if bucket_no_upscale is set, "
                               "because bucket reso is defined by image size automatically", self.where)
        elif p.resolution[0] % reso_multiple or p.resolution[1] % reso_multiple:
            raise ConfigError(f"{self.where}: resolution {p.resolution} must be a multiple of {reso_multiple} on "
                              f"both sides for this model (bucketing is off). Use e.g. "
                              f"{p.resolution[0] // reso_multiple * reso_multiple}.")
        p.validation_split = validation_fraction(p.validation_split, self.where)

    def _load(self, split_seed: int) -> None:
        train: list[ImageItem] = []
        reg: list[ImageItem] = []
        seen: set[str] = set()
        for j, subset in enumerate(self.subsets):
            where = f"{self.where}.subsets[{j}]"
            ident = subset.metadata_file if subset.is_finetune else subset.image_dir
            if subset.num_repeats < 1:
                logger.warning("%s: ignore subset with %s='%s': num_repeats is less than 1", where,
                               "metadata_file" if subset.is_finetune else "image_dir", ident)
                self.empty_dirs.append(f"{ident} (num_repeats {subset.num_repeats})")
                continue
            if ident in seen:
                logger.warning("%s: ignore duplicated subset with '%s': use the first one", where, ident)
                continue
            seen.add(str(ident))
            if subset.face_crop_aug_range is not None and self.params.enable_bucket:
                logger.warning("%s: face_crop_aug_range is ignored because bucketing is enabled (kohya uses it only "
                               "with enable_bucket = false).", where)
            items = finetune_items(subset, j, where) if subset.is_finetune else dreambooth_items(subset, j, where)
            if subset.conditioning_data_dir is not None and items:
                attach_masks(items, subset.conditioning_data_dir, where)
            if not items:
                logger.warning("%s: ignore subset with '%s': no images found", where, ident)
                self.empty_dirs.append(str(ident))
            else:
                self.active_subsets.append(j)
            if subset.is_reg:  # regularisation images are never held out
                reg.extend(items)
                continue
            seed = split_seed if self.params.validation_seed is None else self.params.validation_seed
            kept, held = split_items(items, self.params.validation_split, seed)
            train.extend(kept)
            self.validation_items.extend(held)
        self.num_train_images = sum(i.num_repeats for i in train)
        self.num_reg_images = sum(i.num_repeats for i in reg)
        if train and not reg and any(s.is_reg for s in self.subsets):
            logger.warning("%s: no regularization images", self.where)
        self.items = train + (balance_regularization(train, reg) if train else [])
        self._place()

    def _manager(self) -> BucketManager:
        p = self.params
        if not p.enable_bucket:
            return BucketManager.single(p.resolution)
        return BucketManager.bucketing(p.resolution, p.min_bucket_reso, p.max_bucket_reso, p.bucket_reso_steps,
                                       p.bucket_no_upscale)

    def _check_unbucketed(self, item: ImageItem, random_crop: bool, face: FaceCrop | None) -> None:
        width, height = item.size
        res_w, res_h = self.params.resolution
        if (width > res_w or height > res_h) and not random_crop and face is None:
            raise ConfigError(f"image too large, but cropping and bucketing are disabled: {item.path} is "
                              f"{width}x{height}, resolution is {res_w}x{res_h}. Set enable_bucket = true, or "
                              "random_crop = true, or resize the image.")
        if width < res_w or height < res_h:
            raise ConfigError(f"image size is small: {item.path} is {width}x{height}, smaller than resolution "
                              f"{res_w}x{res_h}. Set enable_bucket = true, or lower resolution, or remove the image.")

    def _place(self) -> None:
        manager = self._manager()
        for item in self.items:
            subset = self.subsets[item.subset]
            interpolation = subset.resize_interpolation or self.params.resize_interpolation
            face = None
            if self.params.enable_bucket:
                if self.params.bucket_no_upscale and min(item.size) < self.params.bucket_reso_steps:
                    raise ConfigError(f"{item.path}: {item.size[0]}x{item.size[1]} is smaller than "
                                      f"bucket_reso_steps {self.params.bucket_reso_steps}; remove it or upscale it.")
                bucket, resized, error = manager.select(*item.size)
            else:
                face = face_from_name(item.path, subset.face_crop_aug_range)
                self._check_unbucketed(item, subset.random_crop, face)
                bucket, resized, error = self.params.resolution, item.size, 0.0
            placement = Placement(bucket, resized, interpolation, subset.random_crop, subset.alpha_mask, face)
            weight = self.params.prior_loss_weight if item.is_reg else 1.0
            self.samples.append(Sample(item, placement, CaptionOptions.from_subset(subset), subset.flip_aug,
                                       subset.color_aug, weight, error, dict(subset.custom_attributes)))

    def bucket_counts(self) -> dict[tuple[int, int], int]:
        counts: dict[tuple[int, int], int] = {}
        for sample in self.samples:
            counts[sample.placement.bucket] = counts.get(sample.placement.bucket, 0) + sample.item.num_repeats
        return counts

    def batch_shapes(self) -> set[tuple[int, int, int]]:
        """(batch size, bucket width, bucket height) of every batch `batches` can cut, whatever the shuffle: a full
        batch and the remainder of each bucket (what a static-shape compile sees)."""
        size, shapes = self.params.batch_size, set()
        for (width, height), count in self.bucket_counts().items():
            shapes.update((n, width, height) for n in {min(size, count), count % size} if n)
        return shapes

    def mean_ar_error(self) -> float:
        errors = [abs(s.ar_error) for s in self.samples]
        return sum(errors) / len(errors) if errors else 0.0

    def batches(self, rng: random.Random) -> list[list[tuple[int, str]]]:
        """Sample indices, `num_repeats` times each, grouped by bucket, shuffled, cut into batches.

        Each index comes with its draw key, "bucket:position" in the shuffled bucket, which the batch size does not
        change (the shuffle is the same for any batch size), so per-sample random draws do not depend on it."""
        buckets: dict[tuple[int, int], list[int]] = {}
        for index, sample in enumerate(self.samples):
            buckets.setdefault(sample.placement.bucket, []).extend([index] * sample.item.num_repeats)
        result = []
        size = self.params.batch_size
        for bucket in sorted(buckets):
            members = buckets[bucket]
            rng.shuffle(members)
            keyed = [(member, f"{bucket[0]}x{bucket[1]}:{position}") for position, member in enumerate(members)]
            result += [keyed[i:i + size] for i in range(0, len(keyed), size)]
        return result

    def bucket_table(self) -> str:
        p = self.params
        role = " (validation)" if self.is_validation else ""
        title = (f"dataset {p.index}{role}: resolution {p.resolution}, batch size {p.batch_size}, "
                 f"{'bucketing on' if p.enable_bucket else 'bucketing off'}, images {len(self.samples)} "
                 f"(train {self.num_train_images}, reg {self.num_reg_images}, with repeats)")
        return format_bucket_table(title, self.bucket_counts(), self.mean_ar_error() if p.enable_bucket else None)

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """Per folder basename: lower-cased tags, counted once per image."""
        frequency: dict[str, dict[str, int]] = {}
        for sample in self.samples:
            caption = sample.item.caption
            text = caption if isinstance(caption, str) else flat_text(caption)
            folder = frequency.setdefault(sample.item.path.parent.name, {})
            for tag in {t.strip().lower() for t in text.split(",") if t.strip()}:
                folder[tag] = folder.get(tag, 0) + 1
        return frequency
