"""Data-loader throughput: samples/s of one epoch of the `DatasetGroup` without latent caches, with latents cached in
RAM, and with latents cached on disk, in one run (issue 5 point 6).

Why: caching latents should make the loader read tensors instead of decoding and resizing images; this shows how
much faster that is and checks that, with caches, no image is opened at all. The encoder is a cheap stand-in
(average-pool by 8, 16 channels): the bench measures the loader, not a VAE.

    python bench/dataloader.py                      # 64 synthetic 512x512 JPEGs with captions, in a temp folder
    python bench/dataloader.py --data DIR           # your images (DIR/*.jpg + .txt captions); caches go to a temp folder
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/dataloader.py` from anywhere
    sys.path.insert(0, str(ROOT))

from library.args import build_parser  # noqa: E402
from library.dataset import DatasetGroup, build_dataset_group  # noqa: E402

LATENT_CHANNELS = 16
IDENTITY = {"encoder": "bench avg-pool x8, 16 channels"}


@dataclass(frozen=True)
class BenchResult:
    """Samples per second (best epoch of `repeats`) each way, and how many images were opened while timing."""

    samples: int
    uncached: float
    cached_ram: float
    cached_disk: float
    opens_uncached: int
    opens_cached: int

    @property
    def ratio_ram(self) -> float:
        return self.cached_ram / self.uncached

    @property
    def ratio_disk(self) -> float:
        return self.cached_disk / self.uncached


def stand_in_encode(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 16, H/8, W/8): the VAE's output shape at almost no cost."""
    return F.avg_pool2d(pixels, 8).repeat(1, 6, 1, 1)[:, :LATENT_CHANNELS]  # 3 channels x 6 >= 16


def make_images(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """`count` JPEGs (a colour gradient plus noise, so they compress like photos) with one caption file each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(count):
        base = np.stack([ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1),
                         np.full((size, size), 255.0 * i / max(count, 1), np.float32)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"img{i:04d}.jpg", quality=90)
        (folder / f"img{i:04d}.txt").write_text(f"image {i}, gradient, noise", encoding="utf-8")
    return folder


def build_group(image_dir: Path, work: Path, size: int, batch_size: int) -> DatasetGroup:
    """The trainer's path: a dataset.toml read through `build_dataset_group` with the parser's defaults."""
    config = work / "dataset.toml"
    config.write_text(f'[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = {size}\n'
                      f"batch_size = {batch_size}\nenable_bucket = true\nbucket_reso_steps = 64\n"
                      f"min_bucket_reso = {max(64, size // 2)}\nmax_bucket_reso = {size * 2}\n"
                      f'[[datasets.subsets]]\nimage_dir = "{image_dir.as_posix()}"\n', encoding="utf-8")
    args = build_parser("bench").parse_args(["--dataset_config", str(config), "--seed", "0"])
    return build_dataset_group(args, reso_multiple=16)


@contextmanager
def count_image_opens() -> Iterator[list[int]]:
    """Count `PIL.Image.open` calls (the loader decodes only through it); yields a one-item list holding the count."""
    original = Image.open
    calls = [0]

    def counting_open(*args: Any, **kwargs: Any) -> Image.Image:
        calls[0] += 1
        return original(*args, **kwargs)

    Image.open = counting_open
    try:
        yield calls
    finally:
        Image.open = original


def _single(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


def time_epoch(group: DatasetGroup, workers: int, check: Callable[[dict[str, Any]], None]) -> tuple[int, float]:
    """(samples, seconds) of one epoch through the DataLoader the trainer uses; `check` sees every batch."""
    group.set_epoch(1)
    loader = DataLoader(group, batch_size=1, shuffle=False, num_workers=workers, collate_fn=_single)
    samples = 0
    start = time.perf_counter()
    for batch in loader:
        check(batch)
        samples += len(batch["image_keys"])
    return samples, time.perf_counter() - start


def _needs_images(batch: dict[str, Any]) -> None:
    if batch["images"] is None or batch["latents"] is not None:
        raise AssertionError("uncached batch without images")


def _needs_latents(batch: dict[str, Any]) -> None:
    latents, (width, height) = batch["latents"], batch["bucket_reso"]
    if batch["images"] is not None or latents is None or latents.shape[1:] != (LATENT_CHANNELS, height // 8, width // 8):
        raise AssertionError("cached batch without latents of the bucket's shape")


def run_bench(data: Path | None = None, count: int = 64, size: int = 512, batch_size: int = 1, workers: int = 0,
              repeats: int = 3) -> BenchResult:
    """Build the group once, then time epochs uncached, with a RAM latent cache and with a disk latent cache; the
    fastest of `repeats` epochs counts, because on a shared machine the slow ones measure the neighbours.

    Images are opened only in worker processes when `workers > 0`, where this process cannot count them; the
    decode counts then come from an extra in-process pass over the group. Torch runs one thread here, as PyTorch
    gives each DataLoader worker: with more, thread hand-offs on a busy machine swamp what is measured.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(data, count, size, batch_size, workers, repeats)
    finally:
        torch.set_num_threads(threads)


def _run(data: Path | None, count: int, size: int, batch_size: int, workers: int, repeats: int) -> BenchResult:
    with tempfile.TemporaryDirectory(prefix="bench_dataloader_") as tmp:
        work = Path(tmp)
        image_dir = data if data is not None else make_images(work / "images", count, size)
        group = build_group(image_dir, work, size, batch_size)

        def measure(check: Callable[[dict[str, Any]], None]) -> tuple[int, float, int]:
            with count_image_opens() as opens:
                timings = [time_epoch(group, workers, check) for _ in range(repeats)]
                if workers:
                    for index in range(len(group)):
                        check(group[index])
            return timings[0][0], min(seconds for _, seconds in timings), opens[0]

        samples, uncached_s, opens_uncached = measure(_needs_images)
        group.cache_latents(stand_in_encode, IDENTITY, to_disk=False, batch_size=8)
        _, ram_s, opens_ram = measure(_needs_latents)
        group.cache_latents(stand_in_encode, IDENTITY, to_disk=True, batch_size=8, cache_dir=str(work / "cache"))
        _, disk_s, opens_disk = measure(_needs_latents)
    if opens_ram or opens_disk:
        raise AssertionError(f"images were opened with latents cached ({opens_ram} in RAM, {opens_disk} on disk)")
    return BenchResult(samples, samples / uncached_s, samples / ram_s, samples / disk_s, opens_uncached,
                       opens_ram + opens_disk)


def main(argv: list[str] | None = None) -> BenchResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="Folder of images with .txt captions (default: synthetic).")
    parser.add_argument("--count", type=int, default=64, help="Synthetic images to make (default 64).")
    parser.add_argument("--size", type=int, default=512, help="Synthetic image side and dataset resolution (default 512).")
    parser.add_argument("--batch_size", type=int, default=1, help="Dataset batch size (default 1).")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0: in process).")
    parser.add_argument("--repeats", type=int, default=3, help="Epochs timed each way; the fastest counts (default 3).")
    args = parser.parse_args(argv)
    result = run_bench(args.data, args.count, args.size, args.batch_size, args.workers, args.repeats)
    print(f"samples per epoch: {result.samples}  (images opened while timing: {result.opens_uncached} uncached, "
          f"{result.opens_cached} cached)")
    print(f"uncached:              {result.uncached:9.1f} samples/s")
    print(f"latents cached in RAM: {result.cached_ram:9.1f} samples/s  ({result.ratio_ram:.1f}x)")
    print(f"latents cached, disk:  {result.cached_disk:9.1f} samples/s  ({result.ratio_disk:.1f}x)")
    return result


if __name__ == "__main__":
    main()
