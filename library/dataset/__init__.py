"""kohya-compatible datasets: dataset.toml schema, buckets, captions, images and the batch dataset."""

from library.dataset.group import DatasetGroup, build_dataset_group

__all__ = ["DatasetGroup", "build_dataset_group"]
