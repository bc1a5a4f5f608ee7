"""Memory and speed options: checkpointing, fp8, block swap, half-precision networks, attention backends, VAE
chunking. Which of them a model honours is up to the model's trainer."""

from __future__ import annotations

import argparse

ATTN_MODES = ["torch", "sdpa", "flash", "mem_efficient", "math", "xformers", "sageattn"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("memory and speed")
    g.add_argument(
        "--gradient_checkpointing", action="store_true", help="Recompute activations in backward to save memory."
    )
    g.add_argument(
        "--cpu_offload_checkpointing", action="store_true", help="Offload checkpointed activations to the CPU."
    )
    g.add_argument(
        "--unsloth_offload_checkpointing", action="store_true", help="kohya Anima's activation offload; here the same as --gradient_checkpointing "
        "--cpu_offload_checkpointing."
    )
    g.add_argument(
        "--fp8_base", action="store_true", help="Store the DiT's attention/MLP Linear weights in float8_e4m3fn (per-tensor scale), computed in the "
        "training dtype; the LoRA stays in higher precision. About halves the DiT's weight memory."
    )
    g.add_argument(
        "--fp8_base_unet", action="store_true", help="Same as --fp8_base for Anima (Qwen3 is never stored in fp8)."
    )
    g.add_argument(
        "--blocks_to_swap",
        type=int,
        default=None,
        help="Number of DiT blocks swapped between CPU and GPU (28-block Anima: up to 26).",
    )
    g.add_argument("--full_fp16", action="store_true", help="Network weights in fp16 (needs --mixed_precision fp16).")
    g.add_argument("--full_bf16", action="store_true", help="Network weights in bf16 (needs --mixed_precision bf16).")
    g.add_argument(
        "--torch_compile",
        action="store_true",
        help="Compile each DiT block with torch.compile, static shapes: each bucket's batch shape compiles once, "
        "then is reused (the log counts the compiles); backend from --dynamo_backend.",
    )
    g.add_argument(
        "--torch_compile_dynamic",
        action="store_true",
        help="With --torch_compile: one graph with dynamic shapes for every bucket instead of one per bucket shape "
        "(fewer compiles for datasets with many buckets, less specialised kernels; on Windows needs MSVC).",
    )
    g.add_argument("--sdpa", action="store_true", help="Use PyTorch scaled-dot-product attention.")
    g.add_argument("--xformers", action="store_true", help="kohya's xformers attention: runs with PyTorch SDPA here, which computes the "
                   "same attention (a warning says so).")
    g.add_argument("--mem_eff_attn", action="store_true", help="SD memory-efficient attention (no effect for Anima).")
    g.add_argument(
        "--attn_mode",
        type=str,
        default=None,
        choices=ATTN_MODES,
        help="Attention kernel: torch/sdpa (PyTorch picks), flash, mem_efficient or math (forced). xformers and "
        "sageattn run as sdpa, which computes the same attention (a warning says so).",
    )
    g.add_argument("--vae_batch_size", type=int, default=1, help="Images per VAE batch when caching latents.")
    g.add_argument(
        "--vae_chunk_size", type=int, default=None, help="Encode/decode large images in spatial tiles of this many latent pixels (x8 image pixels), which "
        "bounds the VAE's memory at a small cost in seams (diffusers' tiling; kohya chunks instead)."
    )
    g.add_argument(
        "--vae_disable_cache", action="store_true", help="Disable the VAE's internal feature cache (saves memory)."
    )
