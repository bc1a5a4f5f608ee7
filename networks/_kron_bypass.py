"""LoKr's update without building its delta: kron(w1, w2) · x = w1 · X · w2ᵀ on x reshaped to (.., in1, in2).

Why: building ΔW = kron(w1, w2) each step and multiplying by it costs a full-width matmul per target, forward,
input gradient and ΔW's own gradient: the LoKr step counted 1.92 x the LoRA step at 1024² (bench/RESULTS.md,
"Step FLOPs"). With kron(A, B)[p·o2 + q, r·i2 + s] = A[p, r] · B[q, s], row p·o2 + q of the update is
Σ_r A[p, r] · (B · X[r]ᵀ)[q]: the same numbers at (1/out1 + 1/in2) of the cost, and no (out, in) tensor kept.
Rank dropout keeps LyCORIS's rule (whole output rows of ΔW dropped, one draw per row, no rescaling), drawn
in the same shape and order as the whole-delta forward, so a seeded run gives the same loss.
"""

from __future__ import annotations

import torch


def kron_bypass_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """`forward` of a LoKr module: y = W x + multiplier · scale · kron(w1, w2) x (see the module docstring)."""
    out = self._org_forward(x, *args, **kwargs)
    if self.training and self.module_dropout and torch.rand(()) < self.module_dropout:
        return out
    w1, w2 = self._w1(), self._w2()
    (out1, in1), (out2, in2) = w1.shape, w2.shape
    rows = x.to(w2.dtype).reshape(*x.shape[:-1], in1, in2)
    update = torch.matmul(w1, torch.matmul(rows, w2.t())).reshape(*x.shape[:-1], out1 * out2)
    update = update * (self.scale * self.multiplier)
    if self.training and self.rank_dropout:
        keep = torch.rand(out1 * out2, 1, device=update.device) > self.rank_dropout
        update = update * keep.flatten().to(update.dtype)
    return out + update.to(out.dtype)
