"""Refuse, before any model loads, a resolution whose images alone cannot fit in memory (`resolution = 100000`).

What it counts, per dataset, for its largest bucket (w x h) times the images handled at once (the batch size, or
--vae_batch_size while caching latents): the decoded 8-bit RGB image (3 bytes a pixel) and the float32 tensor made
from it (12 bytes a pixel) in RAM, and that tensor again on the GPU when training on CUDA (the image encoder takes
it whole). Nothing of the model is counted, so this is a floor: the encoder's activations are many times larger,
and a run this check lets through may still run out of memory. Kept that low on purpose: it refuses only what can
never fit (2048 x 2048 at batch 8 counts 0.5 GB), so no ordinary resolution is ever refused.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Any

import torch

from library.errors import ConfigError

RAM_BYTES_PER_PIXEL = 3 + 12  # decoded uint8 RGB + its float32 tensor
DEVICE_BYTES_PER_PIXEL = 12  # the float32 tensor handed to the image encoder
GIB = 1024**3


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), in bytes; None where it cannot be read (then RAM is not checked)."""
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def available_device_memory(device: torch.device) -> int | None:
    """Free memory of a CUDA device in bytes; None for other devices (their memory is the RAM, or unknown)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free


def check_memory_fits(args: Namespace, group: Any, device: torch.device) -> None:
    """Raise a ConfigError naming the dataset, its largest bucket and the fix when its pixels cannot fit."""
    ram, gpu = available_ram(), available_device_memory(device)
    datasets = list(group.datasets) + (list(group.validation.datasets) if group.validation is not None else [])
    for dataset in datasets:
        if not (buckets := dataset.bucket_counts()):
            continue
        width, height = max(buckets, key=lambda wh: wh[0] * wh[1])
        at_once = (args.vae_batch_size or 1) if args.cache_latents else dataset.params.batch_size
        pixels = width * height * at_once
        need_ram = pixels * (RAM_BYTES_PER_PIXEL + (DEVICE_BYTES_PER_PIXEL if gpu is None else 0))
        for need, have, where in ((need_ram, ram, "RAM"), (pixels * DEVICE_BYTES_PER_PIXEL, gpu, f"{device} memory")):
            if have is not None and need > have:
                raise ConfigError(
                    f"{dataset.where}: its largest bucket {width}x{height} (resolution {'x'.join(map(str, dataset.params.resolution))}) "
                    f"at {at_once} image(s) at once needs at least {need / GIB:.1f} GiB of {where} for the pixels "
                    f"alone, but {have / GIB:.1f} GiB is available. Lower resolution and max_bucket_reso (1024 is "
                    f"usual), or the batch size.")
