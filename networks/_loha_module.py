"""LoHa on one Linear with LyCORIS's shapes, initialisation and scale (adapter-files.md §2.2, §3).

ΔW = scale · (hada_w1_a @ hada_w1_b) ⊙ (hada_w2_a @ hada_w2_b), `hada_w*_a` [out, rank], `hada_w*_b` [rank, in],
scale = alpha / rank. ComfyUI applies alpha / hada_w1_b.shape[0] to the same tensors, so the stored alpha
reproduces the training scale. As LyCORIS starts it: w1_a ~ N(0, 0.1), w1_b and w2_b ~ N(0, 1), w2_a = 0, so
ΔW = 0 at the first step while every factor but w2_a already has a gradient path through the product.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from networks._adapter_module import AdapterModule


class LoHaModule(AdapterModule):
    kind = "loha"

    def __init__(
        self,
        path: str,
        org_module: nn.Linear,
        rank: int,
        alpha: float | None,
        multiplier: float = 1.0,
        rank_dropout: float | None = None,
        module_dropout: float | None = None,
    ) -> None:
        super().__init__(path, org_module, multiplier)
        stds = {"hada_w1_a": 0.1, "hada_w1_b": 1.0, "hada_w2_a": 0.0, "hada_w2_b": 1.0}
        self._add_factors(loha_shapes(org_module.out_features, org_module.in_features, rank),
                          lambda suffix, t: t.normal_(0.0, stds[suffix]) if stds[suffix] else t.zero_())
        self._finish_init(alpha or rank, rank_dropout, module_dropout)

    @property
    def rank(self) -> int:
        return self.hada_w1_b.shape[0]

    def refresh_scale(self) -> None:
        self.scale = float(self.alpha) / self.rank

    def delta_weight(self) -> torch.Tensor:
        return (self.hada_w1_a @ self.hada_w1_b) * (self.hada_w2_a @ self.hada_w2_b) * self.scale

    @torch.no_grad()
    def rescale_(self, ratio: float) -> None:
        self.hada_w1_a.mul_(ratio)

    forward = AdapterModule.forward_whole_delta


def loha_shapes(out_features: int, in_features: int, rank: int) -> dict[str, tuple[int, ...]]:
    """{suffix: shape} of a LoHa on a Linear (out, in), in creation order (the start-up plan reads it too)."""
    return {"hada_w1_a": (out_features, rank), "hada_w1_b": (rank, in_features),
            "hada_w2_a": (out_features, rank), "hada_w2_b": (rank, in_features), "alpha": ()}
