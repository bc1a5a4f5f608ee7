"""`--fp8_base`: the DiT's big Linear weights stored as float8_e4m3fn with one fp32 scale per tensor.

Why: LoRA training never updates the base, so its weights only need to be read; e4m3 halves their memory
(spec anima-model.md §9). Each forward upcasts the weight to the activation dtype (bf16/fp32) and multiplies in
that dtype, so only storage is 8-bit. e4m3 keeps 3 mantissa bits: a weight's relative rounding error is at most
2^-4 (below 2^-6 · scale, the subnormal range, the absolute error is at most 2^-10 · scale).

The converted modules stay `nn.Linear` (class `Fp8Linear`, swapped in place), so LoRA can still wrap their
`forward` and read `.weight`; LoRA must be applied after this, because it captures the forward it wraps.
`Module.to(dtype=...)` keeps fp8 storage (the e4m3 -> bf16/fp16/fp32 -> e4m3 round trip is exact), so the
trainer's later `denoiser.to(device, dtype=weight_dtype)` is safe; weight_dtype itself must not be float8.

Kept in the compute dtype (`KEEP_PRECISE`): the patch embedding, the timestep embedder, the final layer and
every AdaLN modulation (they scale, shift and gate the whole residual stream, so an error there is systematic;
together < 10% of the weights), the adapter's first and last projections (small, with biases) and every
non-Linear (norms, the adapter's embedding) and bias.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8_DTYPE).max  # 448
KEEP_PRECISE = (
    "x_embedder",
    "t_embedder",
    "final_layer",
    "adaln_modulation",
    "llm_adapter.in_proj",
    "llm_adapter.out_proj",
)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 tensor, fp32 scalar scale) with weight ≈ q · scale; the largest |weight| maps to 448."""
    w = weight.detach().float()
    amax = w.abs().max()
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return q.to(dtype) * scale.to(dtype)


class _Fp8Linear(torch.autograd.Function):
    """y = x Wᵀ + b with W rebuilt from fp8; only the fp8 tensor is saved, so backward holds 1 byte/weight."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(q, scale)
        ctx.x_dtype = x.dtype
        return F.linear(x, dequantize(q, scale, x.dtype), None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, torch.Tensor | None]:
        q, scale = ctx.saved_tensors
        grad_x = (grad @ dequantize(q, scale, grad.dtype)).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        grad_bias = grad.flatten(0, -2).sum(0) if ctx.needs_input_grad[3] else None
        return grad_x, None, None, grad_bias


class Fp8Linear(nn.Linear):
    """An `nn.Linear` whose frozen weight is e4m3 with a per-tensor `weight_scale` (non-persistent fp32 buffer)."""

    weight_scale: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Fp8Linear.apply(x, self.weight, self.weight_scale, self.bias)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Fp8Linear:
        """Follow device moves, but keep the weight in e4m3 and the scale in fp32 whatever dtype `fn` asks for."""
        moved = fn(self.weight.detach())
        self.weight.data = moved.to(FP8_DTYPE)
        self.weight_scale = self.weight_scale.to(moved.device)
        if self.bias is not None:
            self.bias.data = fn(self.bias.detach())
        return self


def _keep_precise(path: str) -> bool:
    return any(part in path for part in KEEP_PRECISE)


def apply_fp8_base(model: nn.Module, compute_dtype: torch.dtype) -> int:
    """Store every eligible Linear weight of `model` in e4m3 and cast the rest to `compute_dtype`.

    Returns the number of converted Linears. Raises RuntimeError when a Linear's forward is already wrapped
    (a network was applied first: it would keep calling the plain forward on an fp8 weight).
    """
    converted = 0
    for path, module in model.named_modules():
        if type(module) is not nn.Linear or _keep_precise(path):
            continue
        if "forward" in module.__dict__:
            raise RuntimeError(f"{path}: its forward is already wrapped; apply fp8 before the network (apply_to)")
        q, scale = quantize(module.weight)
        module.__class__ = Fp8Linear
        module.weight = nn.Parameter(q, requires_grad=False)
        module.register_buffer("weight_scale", scale, persistent=False)
        converted += 1
    model.to(compute_dtype)
    return converted
