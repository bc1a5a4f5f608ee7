"""Random weights in the real file layouts, one tensor at a time.

Shape tables come from the models themselves built on the meta device (no memory), so a file written
here always matches what our loaders build. Every tensor is drawn from its own generator seeded by
(seed, name): the result does not depend on write order, and the 2B model can be streamed to disk
without ever holding more than one tensor.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import AutoencoderKLQwenImage
from transformers import Qwen3Config, Qwen3Model

from library.anima import vae_keys
from library.anima.model import AnimaConfig, AnimaDiT
from library.atomic import atomic_path

Shapes = dict[str, tuple[int, ...]]
_DTYPE_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def dit_shapes(config: AnimaConfig, prefix: str = "net.") -> Shapes:
    """The official DiT file's tensors: parameters only (no RoPE buffers), with `prefix`."""
    with torch.device("meta"):
        model = AnimaDiT(config)
    return {prefix + name: tuple(p.shape) for name, p in model.named_parameters()}


def qwen3_shapes(config: Qwen3Config) -> Shapes:
    """ComfyUI's single-file Qwen3 layout: the `Qwen3Model` body with a `model.` prefix, no lm_head."""
    with torch.device("meta"):
        model = Qwen3Model(config)
    return {"model." + name: tuple(p.shape) for name, p in model.named_parameters()}


def vae_shapes(layout: vae_keys.WanVAELayout) -> Shapes:
    """The VAE in original Wan names (the layout of qwen_image_vae.safetensors)."""
    with torch.device("meta"):
        model = AutoencoderKLQwenImage(**layout.diffusers_kwargs())
    rename = vae_keys.diffusers_to_original_map(model.state_dict(), layout.num_res_blocks)
    return {rename[name]: tuple(p.shape) for name, p in model.state_dict().items()}


def init_tensor(name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """fp32 values that keep activations O(1): norms 1 + 0.1 N, biases 0.1 N, embeddings N, matrices N/sqrt(fan_in)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    noise = torch.randn(shape, generator=generator)
    parts = name.split(".")
    if parts[-1] == "gamma" or (len(parts) > 1 and "norm" in parts[-2] and parts[-1] == "weight"):
        return noise.mul_(0.1).add_(1.0)
    if parts[-1] == "bias":
        return noise.mul_(0.1)
    if len(parts) > 1 and parts[-2] in ("embed", "embed_tokens"):
        return noise
    return noise.div_(math.sqrt(max(1, math.prod(shape[1:]))))


def random_state(shapes: Shapes, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """A whole small state dict (tiny models), keys with `prefix` removed."""
    return {name.removeprefix(prefix): init_tensor(name, shape, seed) for name, shape in shapes.items()}


def write_streaming(
    path: Path,
    shapes: Shapes,
    make: Callable[[str, tuple[int, ...]], torch.Tensor],
    dtype: torch.dtype,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write a safetensors file tensor by tensor: the header first (sizes are known), then each tensor's bytes."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape in shapes.items():
        size = math.prod(shape) * itemsize
        header[name] = {"dtype": _DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors pads the header to 8-byte alignment
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(len(blob).to_bytes(8, "little"))
        handle.write(blob)
        for name, shape in shapes.items():
            tensor = make(name, shape).to(dtype).contiguous()
            handle.write(tensor.view(torch.uint8).numpy().tobytes())
