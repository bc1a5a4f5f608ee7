"""The run's Accelerator and what every process must share from the start (the random seed).

kohya's DDP options become accelerate kwargs handlers, and a multi-process run on a machine without an
accelerator device is told to use gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
import random
from argparse import Namespace
from datetime import timedelta
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, broadcast_object_list

from library import tracking

logger = logging.getLogger(__name__)


def make_accelerator(args: Namespace) -> Accelerator:
    """The run's Accelerator, with kohya's DDP options (--ddp_timeout, --ddp_gradient_as_bucket_view,
    --ddp_static_graph) and gloo on machines without an accelerator device."""
    handlers: list[Any] = []
    if args.ddp_timeout:
        handlers.append(InitProcessGroupKwargs(timeout=timedelta(minutes=args.ddp_timeout)))
    if args.ddp_gradient_as_bucket_view or args.ddp_static_graph:
        handlers.append(DistributedDataParallelKwargs(gradient_as_bucket_view=args.ddp_gradient_as_bucket_view,
                                                      static_graph=args.ddp_static_graph))
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=tracking.log_with(args),
                              project_dir=args.logging_dir, cpu=_multi_process_without_device(), kwargs_handlers=handlers,
                              dataloader_config=DataLoaderConfiguration(non_blocking=pinned_batches(args)))
    if accelerator.device.type == "cpu" and args.mixed_precision in ("bf16", "fp16") and \
            accelerator.is_local_main_process:
        logger.warning(half_precision_on_cpu(args.mixed_precision))
    return accelerator


def pinned_batches(args: Namespace) -> bool:
    """Batches in pinned memory, copied to the GPU asynchronously (`--dataloader_pin_memory`, CUDA only)."""
    return bool(getattr(args, "dataloader_pin_memory", True)) and torch.cuda.is_available() and not \
        _multi_process_without_device()


def half_precision_on_cpu(mixed_precision: str) -> str:
    """Said once at start-up: the weights follow --mixed_precision, and a CPU computes bf16 / fp16 far slower than
    fp32 (the VAE took 8 minutes to cache 4 images at 1024x1024 in bf16), with no other sign of why."""
    return (f"--mixed_precision {mixed_precision} on the CPU: the models run in {mixed_precision}, which a CPU "
            "computes 10-30x slower than float32 (caching and every step). For a CPU run use --mixed_precision no; "
            "to train in earnest, use a GPU.")


def shared_random_seed(accelerator: Accelerator) -> int:
    """A random seed that every process shares: the data order and each batch's noise derive from it, so
    per-process seeds would make the processes' shards overlap and miss batches."""
    seed = [random.randint(0, 2**31 - 1)]
    if accelerator.num_processes > 1:
        broadcast_object_list(seed)
    return seed[0]


def _multi_process_without_device() -> bool:
    """accelerate (1.15) only starts gloo (MULTI_CPU) when told `cpu=True`; without it, `accelerate launch
    --multi_gpu --num_processes N` on a machine with no GPU runs N unconnected copies of a 1-process run."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    has_device = getattr(torch, "accelerator", None)
    return not (has_device.is_available() if has_device is not None else torch.cuda.is_available())
