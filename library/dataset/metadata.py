"""kohya's dataset `ss_*` metadata (kohya-cli.md §4.1), so LoRA viewers show our files like kohya's."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from library.dataset.dataset import BucketDataset


def _bucket_info(dataset: BucketDataset) -> dict[str, Any] | None:
    if not dataset.params.enable_bucket:
        return None
    buckets = {i: {"resolution": list(reso), "count": count}
               for i, (reso, count) in enumerate(sorted(dataset.bucket_counts().items()))}
    return {"buckets": buckets, "mean_img_ar_error": dataset.mean_ar_error()}


def _subset_record(dataset: BucketDataset, index: int) -> dict[str, Any]:
    subset = dataset.subsets[index]
    record: dict[str, Any] = {
        "img_count": sum(1 for s in dataset.samples if s.item.subset == index),
        "num_repeats": subset.num_repeats, "color_aug": subset.color_aug, "flip_aug": subset.flip_aug,
        "random_crop": subset.random_crop, "shuffle_caption": subset.shuffle_caption,
        "keep_tokens": subset.keep_tokens, "keep_tokens_separator": subset.keep_tokens_separator,
        "secondary_separator": subset.secondary_separator, "enable_wildcard": subset.enable_wildcard,
        "caption_prefix": subset.caption_prefix, "caption_suffix": subset.caption_suffix,
        "resize_interpolation": subset.resize_interpolation,
    }
    if subset.image_dir:
        record["image_dir"] = os.path.basename(subset.image_dir)
    if subset.is_finetune:
        record["metadata_file"] = os.path.basename(subset.metadata_file or "")
    else:
        record["class_tokens"] = subset.class_tokens
        record["is_reg"] = subset.is_reg
    return record


def group_metadata(group_datasets: Sequence[BucketDataset], counts: dict[str, int]) -> dict[str, str]:
    """ss_datasets, ss_tag_frequency, ss_dataset_dirs, and `counts` ({"ss_num_train_images": n, ...}), as strings.
    The group passes its datasets and counts, so this module needs nothing of group.py (which imports it)."""
    datasets, tag_frequency, dirs = [], {}, {}
    for dataset in group_datasets:
        p = dataset.params
        subsets = [_subset_record(dataset, j) for j in dataset.active_subsets]
        datasets.append({
            "is_dreambooth": not p.is_finetune, "batch_size_per_device": p.batch_size,
            "num_train_images": dataset.num_train_images, "num_reg_images": dataset.num_reg_images,
            "resolution": list(p.resolution or ()), "enable_bucket": p.enable_bucket,
            "min_bucket_reso": p.min_bucket_reso, "max_bucket_reso": p.max_bucket_reso,
            "tag_frequency": dataset.tag_frequency(), "bucket_info": _bucket_info(dataset),
            "resize_interpolation": p.resize_interpolation, "subsets": subsets,
        })
        for folder, frequency in dataset.tag_frequency().items():
            tag_frequency.setdefault(folder, frequency)
        for j, record in zip(dataset.active_subsets, subsets, strict=True):
            subset = dataset.subsets[j]
            if subset.is_reg:
                continue
            name = record.get("metadata_file") or record.get("image_dir")
            if name is None:
                continue
            unique, n = name, 2
            while unique in dirs:
                unique, n = f"{name} ({n})", n + 1
            dirs[unique] = {"n_repeats": subset.num_repeats, "img_count": record["img_count"]}
    return {
        "ss_datasets": json.dumps(datasets),
        "ss_tag_frequency": json.dumps(tag_frequency),
        "ss_dataset_dirs": json.dumps(dirs),
        **{key: str(value) for key, value in counts.items()},
    }
