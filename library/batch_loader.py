"""The training DataLoader over the dataset's ready-made batches (the dataset buckets and batches itself)."""

from __future__ import annotations

from argparse import Namespace
from typing import Any

import torch

from library.accelerator_setup import pinned_batches
from library.signals import worker_options


def build_batch_loader(args: Namespace, dataset: Any) -> torch.utils.data.DataLoader:
    """One dataset item is one batch, so the loader's batch size is 1 and its collate unwraps it; workers are capped
    at the CPU threads torch uses (more only compete for the same cores)."""
    workers = min(args.max_data_loader_n_workers or 0, torch.get_num_threads())
    return torch.utils.data.DataLoader(
        BatchView(dataset), batch_size=1, shuffle=False, collate_fn=_first,
        num_workers=workers, pin_memory=pinned_batches(args), **worker_options(workers))


class BatchView(torch.utils.data.Dataset):
    """The dataset's batches without its `set_epoch`: accelerate's prepared loader calls `set_epoch` with its own
    0-based iteration count, which would override the loop's 1-based epoch (and differ after a resume)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


def _first(items: list[Any]) -> Any:
    return items[0]
