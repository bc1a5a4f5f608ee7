"""LoKr on one Linear with LyCORIS's shapes and scale (adapter-files.md §4.1).

ΔW = scale · kron(w1, w2); w1 [out_l, in_m], w2 [out_k, in_n] from `factorization(out/in, factor)`.
w1 is split into `lokr_w1_a @ lokr_w1_b` only with decompose_both and rank < max(w1)/2; w2 is split into
`lokr_w2_a @ lokr_w2_b` when rank < max(w2)/2; `full_matrix` keeps both whole. The scale is alpha / rank
when a half is split and 1 when both are whole, exactly what ComfyUI applies to the saved file (it ignores
alpha then), so the stored alpha is the rank in that case, as LyCORIS stores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from networks._adapter_module import AdapterModule
from networks._kron_bypass import kron_bypass_forward


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """(m, n), m ≤ n, m · n = dimension: (factor, dimension / factor) when factor divides it, else the
    divisor pair with m ≤ factor (no bound for factor ≤ 0) whose sum is smallest."""
    if factor > 0 and dimension % factor == 0:
        small, large = sorted((factor, dimension // factor))
        return small, large
    limit = dimension if factor <= 0 else factor
    best = (1, dimension)
    for m in range(2, math.isqrt(dimension) + 1):
        if m > limit:
            break
        if dimension % m == 0:
            best = (m, dimension // m)
    return best


@dataclass(frozen=True)
class LoKrLayout:
    w1: tuple[int, int]
    w2: tuple[int, int]
    rank: int
    split_w1: bool
    split_w2: bool

    @property
    def both_whole(self) -> bool:
        return not (self.split_w1 or self.split_w2)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """{suffix: shape} of the module's tensors, in creation order (the start-up plan reads it too)."""
        r = self.rank
        w1 = {"lokr_w1_a": (self.w1[0], r), "lokr_w1_b": (r, self.w1[1])} if self.split_w1 else {"lokr_w1": self.w1}
        w2 = {"lokr_w2_a": (self.w2[0], r), "lokr_w2_b": (r, self.w2[1])} if self.split_w2 else {"lokr_w2": self.w2}
        return w1 | w2 | {"alpha": ()}


def lokr_layout(
    out_features: int, in_features: int, rank: int, factor: int, decompose_both: bool, full_matrix: bool
) -> LoKrLayout:
    out_l, out_k = factorization(out_features, factor)
    in_m, in_n = factorization(in_features, factor)
    split_w1 = decompose_both and not full_matrix and rank < max(out_l, in_m) / 2
    split_w2 = not full_matrix and rank < max(out_k, in_n) / 2
    return LoKrLayout((out_l, in_m), (out_k, in_n), rank, split_w1, split_w2)


class LoKrModule(AdapterModule):
    kind = "lokr"

    def __init__(
        self,
        path: str,
        org_module: nn.Linear,
        layout: LoKrLayout,
        alpha: float | None,
        multiplier: float = 1.0,
        rank_dropout: float | None = None,
        module_dropout: float | None = None,
    ) -> None:
        super().__init__(path, org_module, multiplier)
        self.layout = layout
        self._add_factors(layout.tensor_shapes(),  # w2's (second) factor starts at zero: ΔW = 0
                          lambda suffix, t: t.zero_() if suffix in ("lokr_w2", "lokr_w2_b")
                          else nn.init.kaiming_uniform_(t, a=math.sqrt(5)))
        self._finish_init(layout.rank if layout.both_whole or not alpha else alpha, rank_dropout, module_dropout)

    @property
    def rank(self) -> int:
        return self.layout.rank

    def refresh_scale(self) -> None:
        self.scale = 1.0 if self.layout.both_whole else float(self.alpha) / self.layout.rank

    def _w1(self) -> torch.Tensor:
        return self.lokr_w1_a @ self.lokr_w1_b if self.layout.split_w1 else self.lokr_w1

    def _w2(self) -> torch.Tensor:
        return self.lokr_w2_a @ self.lokr_w2_b if self.layout.split_w2 else self.lokr_w2

    def delta_weight(self) -> torch.Tensor:
        return torch.kron(self._w1(), self._w2()) * self.scale

    @torch.no_grad()
    def rescale_(self, ratio: float) -> None:
        (self.lokr_w2_a if self.layout.split_w2 else self.lokr_w2).mul_(ratio)

    forward = kron_bypass_forward
