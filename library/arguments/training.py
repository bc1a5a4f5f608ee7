"""Run length, batching, precision, seeds and DDP options (part of kohya `add_training_arguments`)."""

from __future__ import annotations

import argparse

from .types import NO_EFFECT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--train_batch_size", type=int, default=1, help="Default batch size for datasets that set none.")
    g.add_argument("--max_train_steps", type=int, default=1600, help="Number of optimizer steps.")
    g.add_argument("--max_train_epochs", type=int, default=None, help="Number of epochs (overrides --max_train_steps).")
    g.add_argument(
        "--max_data_loader_n_workers", type=int, default=8, help="DataLoader worker processes (0 = main process)."
    )
    g.add_argument(
        "--dataloader_pin_memory", action=argparse.BooleanOptionalAction, default=True,
        help="On a CUDA device: batches are read into pinned host memory and copied to the GPU without making the "
        "CPU wait (the next batch is prepared while the GPU trains). --no-dataloader_pin_memory: plain copies.")
    g.add_argument(
        "--persistent_data_loader_workers", action="store_true", help="Accepted for kohya configs but not used: workers restart each epoch so that the epoch's data "
        "order and caption augmentation reach them (a resumed run depends on it)."
    )
    g.add_argument("--seed", type=int, default=None, help="Random seed (random when unset).")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimizer step.")
    g.add_argument(
        "--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"], help="Autocast precision."
    )
    g.add_argument("--ddp_timeout", type=int, default=None, help="DDP timeout in minutes.")
    g.add_argument("--ddp_gradient_as_bucket_view", action="store_true", help="DDP gradient_as_bucket_view.")
    g.add_argument("--ddp_static_graph", action="store_true", help="DDP static_graph.")
    g.add_argument("--dynamo_backend", type=str, default="inductor", help="torch.compile backend for --torch_compile.")
    g.add_argument("--lowram", action="store_true", help="Load models straight to the GPU to save system RAM.")
    g.add_argument("--highvram", action="store_true", help="Skip cache clean-ups that save VRAM.")
    g.add_argument(
        "--max_token_length", type=int, default=None, choices=[None, 150, 225], help=f"SD token length {NO_EFFECT}."
    )
    g.add_argument("--clip_skip", type=int, default=None, help=f"CLIP layers to skip {NO_EFFECT}.")
