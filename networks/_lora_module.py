"""LoRA on one Linear: y = W x + multiplier · (alpha / rank) · up(down(x)).

As kohya: `lora_down` [rank, in] kaiming-uniform (a = √5), `lora_up` [out, rank] zeros, so training starts at
the base model; alpha None or 0 means alpha = rank. ComfyUI applies the same alpha / down.shape[0], so the
stored per-module alpha reproduces the training scale (adapter-files.md §3).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from networks._adapter_module import AdapterModule


class LoRAModule(AdapterModule):
    kind = "lora"

    def __init__(
        self,
        path: str,
        org_module: nn.Linear,
        rank: int,
        alpha: float | None,
        multiplier: float = 1.0,
        dropout: float | None = None,
        rank_dropout: float | None = None,
        module_dropout: float | None = None,
    ) -> None:
        super().__init__(path, org_module, multiplier)
        device = self._model_device()
        self.lora_down = nn.Linear(org_module.in_features, rank, bias=False, device=device)
        self.lora_up = nn.Linear(rank, org_module.out_features, bias=False, device=device)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.dropout = dropout
        self._finish_init(alpha or rank, rank_dropout, module_dropout)

    @property
    def rank(self) -> int:
        return self.lora_down.weight.shape[0]

    def refresh_scale(self) -> None:
        self.scale = float(self.alpha) / self.rank

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_up.weight @ self.lora_down.weight) * self.scale

    @torch.no_grad()
    def rescale_(self, ratio: float) -> None:
        self.lora_up.weight.mul_(ratio)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self._org_forward(x, *args, **kwargs)
        if self.training and self.module_dropout and torch.rand(()) < self.module_dropout:
            return out
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.lora_down.weight.dtype)  # under autocast the matmul casts; a copy here would be kept for backward
        hidden = self.lora_down(x)
        scale = self.scale
        if self.training and self.dropout:
            hidden = F.dropout(hidden, p=self.dropout)
        if self.training and self.rank_dropout:
            # one mask per sample and rank, broadcast over every token axis (the DiT's input is 5-D)
            shape = (hidden.shape[0],) + (1,) * (hidden.dim() - 2) + (hidden.shape[-1],)
            hidden = hidden * (torch.rand(shape, device=hidden.device) > self.rank_dropout).to(hidden.dtype)
            scale = scale / (1.0 - self.rank_dropout)
        return out + (self.lora_up(hidden) * (self.multiplier * scale)).to(out.dtype)
