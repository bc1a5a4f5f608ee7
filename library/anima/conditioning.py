"""Text encodings -> the DiT's cross-attention context, ComfyUI's recipe (spec anima-model.md §4.2).

ComfyUI runs the `llm_adapter` on one unpadded prompt without masks, multiplies the output rows by the T5 token
weights and zero-pads the rows to 512. We batch captions of different lengths, so we right-pad them and pass
masks (True = attend): with masked padding every caption's rows equal its own unpadded run, and rows past a
caption's length are zero, as ComfyUI's padding rows are. The DiT's cross-attention is unmasked and each zero
row still takes softmax weight, so the number of rows matters: ComfyUI's is max(512, the caption's own T5 length).
A batch is built to max(512, its longest), and `run_per_context_length` gives each caption its own row count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from library.anima.text import AnimaTextEncoder, TextEncoding

CONTEXT_ROWS = 512  # ComfyUI pads the adapter output to this many rows (never truncates)


def collate_text(encodings: Sequence[TextEncoding]) -> dict[str, torch.Tensor]:
    """Right-pad a list of encodings into batch tensors with bool masks (True = real token)."""
    batch, width = len(encodings), encodings[0].qwen_hidden.shape[-1]
    lq = max(e.qwen_hidden.shape[0] for e in encodings)
    lt = max(e.t5_ids.shape[0] for e in encodings)
    out = {
        "qwen_hidden": torch.zeros(batch, lq, width, dtype=encodings[0].qwen_hidden.dtype),
        "qwen_mask": torch.zeros(batch, lq, dtype=torch.bool),
        "t5_ids": torch.zeros(batch, lt, dtype=torch.long),
        "t5_mask": torch.zeros(batch, lt, dtype=torch.bool),
        "t5_weights": torch.zeros(batch, lt, dtype=torch.float32),
    }
    for row, e in enumerate(encodings):
        nq, nt = e.qwen_hidden.shape[0], e.t5_ids.shape[0]
        out["qwen_hidden"][row, :nq] = e.qwen_hidden
        out["qwen_mask"][row, :nq] = True
        out["t5_ids"][row, :nt] = e.t5_ids
        out["t5_mask"][row, :nt] = True
        out["t5_weights"][row, :nt] = e.t5_weights
    return out


def _mask_or_none(mask: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """No mask where nothing is padded: then the adapter runs exactly as ComfyUI runs it (unmasked)."""
    return None if bool(mask.all()) else mask.to(device)


def build_context(adapter: nn.Module, batch: dict[str, torch.Tensor], min_rows: int = CONTEXT_ROWS) -> torch.Tensor:
    """Adapter output × T5 weights, rows past each caption zeroed, zero-padded to max(min_rows, Lt) rows.

    Runs in the adapter's dtype and device and keeps gradients (the adapter may be trained through a LoRA).
    """
    weight = next(adapter.parameters())
    device, dtype = weight.device, weight.dtype
    qwen_mask, t5_mask = batch["qwen_mask"], batch["t5_mask"]
    rows = adapter(
        batch["qwen_hidden"].to(device=device, dtype=dtype),
        batch["t5_ids"].to(device),
        target_mask=_mask_or_none(t5_mask, device),
        source_mask=_mask_or_none(qwen_mask, device),
    )
    scale = (batch["t5_weights"] * t5_mask).to(device=device, dtype=rows.dtype).unsqueeze(-1)
    rows = rows * scale
    missing = min_rows - rows.shape[1]
    return nn.functional.pad(rows, (0, 0, 0, missing)) if missing > 0 else rows


def context_groups(t5_mask: torch.Tensor, min_rows: int = CONTEXT_ROWS) -> list[tuple[torch.Tensor, int]]:
    """(sample indices, context rows) for the samples that share ComfyUI's row count, max(min_rows, own T5 length).
    A single group whenever no caption is longer than min_rows: the common batch runs as one."""
    rows = t5_mask.sum(dim=1).clamp(min=min_rows)
    return [(torch.nonzero(rows == n).flatten(), int(n)) for n in torch.unique(rows).tolist()]


def run_per_context_length(dit: Callable[..., torch.Tensor], x: torch.Tensor, timesteps: torch.Tensor,
                           context: torch.Tensor, t5_mask: torch.Tensor) -> torch.Tensor:
    """The DiT on each group of `context_groups` with its own rows, the outputs back in batch order: without a key
    mask, a caption batched with one past 512 tokens would attend to the long one's extra zero rows (5.9e-3
    relative on the tiny model), which ComfyUI, conditioning each caption alone, never shows it."""
    groups = context_groups(t5_mask)  # pass the host mask: grouping reads it, which would wait on a GPU
    if len(groups) == 1:
        return dit(x, timesteps, context[:, :groups[0][1]])
    groups = [(index.to(x.device, non_blocking=True), rows) for index, rows in groups]
    outputs = [dit(x[index], timesteps[index], context[index, :rows]) for index, rows in groups]
    order = torch.cat([index for index, _ in groups])
    return torch.cat(outputs)[torch.argsort(order)]


def encode_captions_to_context(
    text_encoder: AnimaTextEncoder, adapter: nn.Module, captions: Sequence[str], parse_weights: bool = False
) -> torch.Tensor:
    """Captions in, cross-attention context (B, max(512, Lt), Dt) out. `parse_weights` for sample prompts."""
    return build_context(adapter, collate_text(text_encoder.encode(captions, parse_weights)))
