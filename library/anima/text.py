"""Captions -> per-caption text encodings, exactly as ComfyUI's Anima text encoder makes them.

ComfyUI is where users run the LoRA, so training sees what inference sees (spec anima-model.md §4.2, ComfyUI
column; pitfalls 2-3):
- Qwen3 gets the raw text: no chat template, no special tokens, no padding, no truncation; an empty caption is
  the single token `<|endoftext|>` (151643), whose hidden state is used unmasked. The output is
  `last_hidden_state` (after the final RMSNorm). A caption that holds `<|endoftext|>` itself (typed literally)
  gets ComfyUI's key mask from that token on (`pad_token_mask`).
- T5 ids get `</s>` appended, never truncated; each id carries its prompt weight (1 unless a sample prompt uses
  ComfyUI's weight syntax; `</s>` always 1).
- Prompt syntax: each weighted piece is tokenized on its own, as ComfyUI does (`prompt_weights.py`). Dataset
  captions are literal text, one piece (= ComfyUI's escaped prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, Qwen3Model

from library.anima.prompt_weights import parse_prompt_weights
from library.anima.qwen3 import load_qwen3
from library.anima.tokenizers import QWEN_PAD_ID, T5_EOS_ID, load_qwen_tokenizer, load_t5_tokenizer


@dataclass
class TextEncoding:
    """One caption's text-encoder output, kept on the CPU in fp32 (what the text cache stores)."""

    qwen_hidden: torch.Tensor  # (Lq, D) float32
    t5_ids: torch.Tensor  # (Lt,) int64, ends with </s> = 1
    t5_weights: torch.Tensor  # (Lt,) float32


@dataclass
class TokenizedCaption:
    """Token ids of one caption for both tokenizers, and the T5 per-token weights."""

    qwen_ids: list[int]
    t5_ids: list[int]
    t5_weights: list[float]


def tokenize_caption(
    qwen_tokenizer: PreTrainedTokenizerBase,
    t5_tokenizer: PreTrainedTokenizerBase,
    caption: str,
    parse_weights: bool,
) -> TokenizedCaption:
    """ComfyUI's `AnimaTokenizer` for one caption; `parse_weights=False` takes it as literal text."""
    pieces = parse_prompt_weights(caption) if parse_weights else ([(caption, 1.0)] if caption else [])
    qwen_ids: list[int] = []
    t5_ids: list[int] = []
    t5_weights: list[float] = []
    for text, weight in pieces:
        qwen_ids += qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = t5_tokenizer(text, add_special_tokens=False)["input_ids"]
        t5_ids += ids
        t5_weights += [weight] * len(ids)
    return TokenizedCaption(qwen_ids or [QWEN_PAD_ID], t5_ids + [T5_EOS_ID], t5_weights + [1.0])


def pad_token_mask(ids: Sequence[int], dtype: torch.dtype) -> torch.Tensor | None:
    """ComfyUI's additive Qwen3 mask (1, 1, L, L) for a caption whose ids hold `<|endoftext|>`, its pad token:
    keys from the first one on get finfo.min / 4, keys in the future the same causal value (sd1_clip masks from
    the first pad token; llama.py adds the two). Finite, so a caption that starts with it leaves every key of a
    row equally masked and the row attends uniformly over its causal window. None where the mask changes nothing:
    no pad token, or the empty caption's lone one (a single key)."""
    if QWEN_PAD_ID not in ids or len(ids) == 1:
        return None
    low = torch.finfo(dtype).min / 4
    keys = torch.zeros(len(ids), dtype=dtype)
    keys[list(ids).index(QWEN_PAD_ID):] = low
    causal = torch.full((len(ids), len(ids)), low, dtype=dtype).triu(1)
    return (keys.unsqueeze(0) + causal)[None, None]


class AnimaTextEncoder:
    """Qwen3 plus both tokenizers: captions in, `TextEncoding`s out (Qwen3's weights are frozen; a LoRA on it may
    train)."""

    def __init__(
        self, qwen: Qwen3Model, qwen_tokenizer: PreTrainedTokenizerBase, t5_tokenizer: PreTrainedTokenizerBase
    ) -> None:
        self.qwen, self.qwen_tokenizer, self.t5_tokenizer = qwen, qwen_tokenizer, t5_tokenizer

    @classmethod
    def load(
        cls,
        qwen_path: str | Path,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        t5_tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> AnimaTextEncoder:
        """Qwen3 (folder or single file) and its tokenizer; `t5_tokenizer` from `load_t5_tokenizer`, default ours."""
        return cls(
            load_qwen3(qwen_path, dtype=dtype, device=device),
            load_qwen_tokenizer(qwen_path),
            t5_tokenizer if t5_tokenizer is not None else load_t5_tokenizer(),
        )

    def tokenize(self, captions: Sequence[str], parse_weights: bool = False) -> list[TokenizedCaption]:
        return [tokenize_caption(self.qwen_tokenizer, self.t5_tokenizer, c, parse_weights) for c in captions]

    def encode(self, captions: Sequence[str], parse_weights: bool = False, grad: bool = False) -> list[TextEncoding]:
        """One Qwen3 forward for the list, right-padded and with no attention mask; a caption that needs
        ComfyUI's pad-token mask runs alone with it. `grad`: keep the graph, for a text-encoder LoRA that trains
        (Qwen3's own weights stay frozen).

        Qwen3 attends causally, so a real token never sees the padding after it: each caption's rows equal its
        own unpadded run (which is ComfyUI's run: no mask for a single prompt, so the empty prompt's lone
        `<|endoftext|>` is attended, not masked).
        """
        with torch.set_grad_enabled(grad):
            return self._encode(self.tokenize(captions, parse_weights))

    def _encode(self, tokens: list[TokenizedCaption]) -> list[TextEncoding]:
        masks = [pad_token_mask(t.qwen_ids, self.qwen.dtype) for t in tokens]
        plain = [row for row, mask in enumerate(masks) if mask is None]
        hidden = dict(zip(plain, self._hidden([tokens[row].qwen_ids for row in plain]), strict=True))
        for row, mask in enumerate(masks):
            if mask is not None:
                (hidden[row],) = self._hidden([tokens[row].qwen_ids], mask)
        return [
            TextEncoding(
                qwen_hidden=hidden[row],
                t5_ids=torch.tensor(t.t5_ids, dtype=torch.long),
                t5_weights=torch.tensor(t.t5_weights, dtype=torch.float32),
            )
            for row, t in enumerate(tokens)
        ]

    def _hidden(self, id_lists: list[list[int]], mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Qwen3's last hidden states (fp32, CPU) for right-padded id lists, each cut to its own length."""
        if not id_lists:
            return []
        device = self.qwen.embed_tokens.weight.device
        ids = torch.full((len(id_lists), max(map(len, id_lists))), QWEN_PAD_ID, dtype=torch.long)
        for row, caption_ids in enumerate(id_lists):
            ids[row, : len(caption_ids)] = torch.tensor(caption_ids)
        mask = mask.to(device) if mask is not None else None
        hidden = self.qwen(input_ids=ids.to(device), attention_mask=mask, use_cache=False).last_hidden_state
        return [hidden[row, : len(caption_ids)].float().cpu().clone() for row, caption_ids in enumerate(id_lists)]
