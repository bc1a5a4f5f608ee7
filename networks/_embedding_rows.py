"""Trained rows of the llm_adapter's T5-id embedding (`llm_adapter.embed`), for pivotal tuning of a trigger word.

Only the k rows of the trigger's T5 pieces train: the parameter is a (k, D) delta added where a looked-up id is one
of them, so the frozen 32128-row table gets no gradient and never changes. In a file the delta is a plain rank-k
LoRA on `llm_adapter.embed.weight` that ComfyUI's loader applies unchanged (W + alpha / rank · up @ down):
`lora_up` (32128, k) holds a one in row `token_ids[j]` of column j, `lora_down` (k, D) the delta rows, and
alpha = k, so up @ down is exactly the delta on those rows and zero elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from library.errors import ConfigError
from networks._adapter_module import AdapterModule

PATH = "llm_adapter.embed"


def rows_from_file(key: str, up: torch.Tensor, down: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """(token ids, delta rows (k, D)) of a file's embedding LoRA, read back whatever factorisation it holds: each
    column of `up` must be zero except in one row (the form we write and our tools keep)."""
    rows = [torch.nonzero(column).flatten().tolist() for column in up.float().T]
    if any(len(row) != 1 for row in rows):
        raise ConfigError(f"{key}: every column of an embedding lora_up must address exactly one token row (the "
                          "trigger rows this trainer writes); this one does not, so it is not a trigger's rows.")
    ids = [row[0] for row in rows]
    scale = up.float()[ids, range(len(ids))].unsqueeze(1)
    return ids, down.float() * scale


class EmbeddingRowsModule(AdapterModule):
    """ΔW on `token_ids` rows of an Embedding; trains for the first `train_steps` optimizer steps (None: all)."""

    kind = "embedding"

    def __init__(self, embedding: nn.Embedding, token_ids: list[int], init_rows: torch.Tensor,
                 train_steps: int | None = None, accumulation: int = 1, lr: float | None = None) -> None:
        super().__init__(PATH, embedding)
        weight = embedding.weight
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long, device=weight.device))
        base = weight.detach()[self.token_ids].float()
        self.delta = nn.Parameter(init_rows.to(base.device, torch.float32) - base)
        # micro-batches trained so far: saved with a state, so a resumed run freezes the rows at the same step
        self.register_buffer("micro_steps", torch.zeros((), dtype=torch.long, device=weight.device))
        self.train_steps, self.accumulation, self.lr = train_steps, accumulation, lr

    @property
    def rank(self) -> int:
        return self.delta.shape[0]

    def trains_now(self) -> bool:
        return self.train_steps is None or int(self.micro_steps) // self.accumulation < self.train_steps

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self._org_forward(ids)
        delta = self.delta
        if torch.is_grad_enabled() and self.training and delta.requires_grad:
            if self.trains_now():
                self.micro_steps += 1
            else:
                delta = delta.detach()  # no gradient: the optimizer skips the rows from here on
        hits = (ids.unsqueeze(-1) == self.token_ids).to(delta.dtype)
        return out + (hits @ delta * self.multiplier).to(out.dtype)

    def delta_weight(self) -> torch.Tensor:
        up, down = self._factors()
        return up @ down

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self.org_module.weight
        up = torch.zeros(weight.shape[0], self.rank, dtype=self.delta.dtype, device=self.delta.device)
        up[self.token_ids, torch.arange(self.rank, device=up.device)] = 1.0
        return up, self.delta

    def file_tensors(self) -> dict[str, torch.Tensor]:
        up, down = self._factors()
        return {"lora_up.weight": up, "lora_down.weight": down.detach(),
                "alpha": torch.tensor(float(self.rank), device=up.device)}

    @torch.no_grad()
    def merge_to_org(self, multiplier: float) -> None:
        weight = self.org_module.weight
        weight[self.token_ids] += (self.delta * multiplier).to(weight.dtype)

    def load_file_tensors(self, tensors: dict[str, tuple[str, torch.Tensor]]) -> None:
        """Continue training the rows a file holds: the same token ids (in any order), trained rows = file's rows."""
        missing = [s for s in ("lora_up.weight", "lora_down.weight") if s not in tensors]
        key = next(iter(tensors.values()))[0]
        if missing:
            raise ConfigError(f"{key}: the trigger rows lack {missing}.")
        up_key, up = tensors["lora_up.weight"]
        _, down = tensors["lora_down.weight"]
        ids, delta = rows_from_file(up_key, up, down)
        scale = float(tensors["alpha"][1]) / len(ids) if "alpha" in tensors else 1.0
        own = self.token_ids.tolist()
        if sorted(ids) != sorted(own) or delta.shape[1] != self.delta.shape[1]:
            raise ConfigError(f"{up_key}: the file's trigger rows are for T5 ids {ids} (width {delta.shape[1]}), "
                              f"but --pivotal_trigger gives ids {own} (width {self.delta.shape[1]}). Use the trigger "
                              "the file was trained with (its ss_pivotal_trigger metadata).")
        order = [ids.index(token) for token in own]
        with torch.no_grad():
            self.delta.copy_(delta[order] * scale)
