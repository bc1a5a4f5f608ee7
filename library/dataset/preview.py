"""kohya's --debug_dataset: a look at what the trainer will see, without loading any model."""

from __future__ import annotations

from typing import Any


def print_dataset_preview(dataset: Any, batches: int = 3) -> None:
    """kohya's --debug_dataset: show the buckets and the first batches' captions and sizes, then stop."""
    print(dataset.bucket_table())
    dataset.set_epoch(1)
    for index in range(min(batches, len(dataset))):
        batch = dataset[index]
        print(f"batch {index}: bucket {batch['bucket_reso']}, images {batch['image_keys']}")
        for caption in batch["captions"]:
            print(f"  caption: {caption!r}")
