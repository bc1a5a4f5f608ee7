"""Rotary position embeddings: the DiT's 3-axis RoPE and the LLM adapter's 1-D RoPE.

Both are computed on the fly in fp32 from the sequence sizes, so there is no size limit and no buffer ends up
in a checkpoint (the official file has none; kohya's saves carry `pos_embedder.*` buffers ComfyUI rejects).
Both use the rotate-half (NeoX) pairing: element i rotates with element i + D/2.
"""

from __future__ import annotations

import torch


def _frequencies(dim: int, theta: float, device: torch.device | str | None) -> torch.Tensor:
    """theta^(-2j/dim) for j = 0 .. dim/2 - 1, in fp32."""
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float32)[: dim // 2] / dim
    return 1.0 / (theta**exponents)


def _cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Duplicate the D/2 angles to D (both halves share them) and take cos/sin."""
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rope_1d(
    length: int, head_dim: int, device: torch.device | str | None = None, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapter RoPE (HF-Llama style) for positions 0..length-1 -> cos, sin of shape (length, head_dim)."""
    positions = torch.arange(length, device=device, dtype=torch.float32)
    return _cos_sin(torch.outer(positions, _frequencies(head_dim, theta, device)))


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """(d_t, d_h, d_w): h and w get head_dim//6*2 each, t the rest (128 -> 44, 42, 42)."""
    d_hw = head_dim // 6 * 2
    return head_dim - 2 * d_hw, d_hw, d_hw


def rope_3d(
    frames: int,
    height: int,
    width: int,
    head_dim: int,
    extrapolation: tuple[float, float, float] = (1.0, 4.0, 4.0),
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DiT RoPE for a (frames, height, width) grid of patches -> cos, sin of shape (frames*height*width, head_dim).

    Token order is t-major, then row, then column (the patchified sequence order). Per axis a with ratio r_a,
    theta_a = 10000 * r_a^(d_a/(d_a-2)) (NTK extrapolation); the per-token angles are concat[t, y, x].
    """
    angles = []
    for size, dim, ratio in zip((frames, height, width), rope_axis_dims(head_dim), extrapolation, strict=True):
        theta = 10000.0 * ratio ** (dim / (dim - 2))
        positions = torch.arange(size, device=device, dtype=torch.float32)
        angles.append(torch.outer(positions, _frequencies(dim, theta, device)))
    t, y, x = angles
    grid = torch.cat(
        [
            t[:, None, None, :].expand(frames, height, width, -1),
            y[None, :, None, :].expand(frames, height, width, -1),
            x[None, None, :, :].expand(frames, height, width, -1),
        ],
        dim=-1,
    )
    return _cos_sin(grid.reshape(frames * height * width, -1))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., L, D) by cos/sin (L, D); computed in fp32, returned in x's dtype."""
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)
