"""A trainable delta on a norm's scale: the norm runs with weight W + multiplier · w_norm.

Saved as `<module>.w_norm`, which ComfyUI adds to W like a `diff` patch (adapter-files.md §7). The norm's
own forward runs with the shifted weight swapped in for the call, so any norm class (kohya's RMSNorm,
torch's RMSNorm) keeps its exact math and dtype handling, also when a checkpointed block recomputes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from networks._adapter_module import AdapterModule


class NormModule(AdapterModule):
    kind = "norm"

    def __init__(self, path: str, org_module: nn.Module, multiplier: float = 1.0) -> None:
        super().__init__(path, org_module, multiplier)
        weight = org_module.weight
        device = None if weight.is_meta else weight.device
        self.w_norm = nn.Parameter(torch.zeros(weight.shape, device=device))

    @property
    def rank(self) -> int:
        return self.w_norm.shape[0]

    def delta_weight(self) -> torch.Tensor:
        return self.w_norm

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        org = self.org_module
        base = org._parameters["weight"]
        org._parameters["weight"] = base + (self.w_norm * self.multiplier).to(base.dtype)
        try:
            return self._org_forward(x, *args, **kwargs)
        finally:
            org._parameters["weight"] = base
