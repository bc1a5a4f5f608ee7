"""Captions -> per-caption text encodings, exactly as ComfyUI's Anima text encoder makes them.

ComfyUI is where users run the LoRA, so training sees what inference sees (spec anima-model.md §4.2, ComfyUI
column; pitfalls 2-3):
- Qwen3 gets the raw text: no chat template, no special tokens, no padding, no truncation; an empty caption is
  the single token `<|endoftext|>` (151643), whose hidden state is used unmasked. The output is
  `last_hidden_state` (after the final RMSNorm).
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


class AnimaTextEncoder:
    """Qwen3 plus both tokenizers: captions in, `TextEncoding`s out (no gradients; Qwen3 is never trained)."""

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

    @torch.no_grad()
    def encode(self, captions: Sequence[str], parse_weights: bool = False) -> list[TextEncoding]:
        """One Qwen3 forward for the whole list, right-padded and with no attention mask.

        Qwen3 attends causally, so a real token never sees the padding after it: each caption's rows equal its
        own unpadded run (which is ComfyUI's run: no mask for a single prompt, so the empty prompt's lone
        `<|endoftext|>` is attended, not masked).
        """
        tokens = self.tokenize(captions, parse_weights)
        if not tokens:
            return []
        device = self.qwen.embed_tokens.weight.device
        longest = max(len(t.qwen_ids) for t in tokens)
        ids = torch.full((len(tokens), longest), QWEN_PAD_ID, dtype=torch.long)
        for row, t in enumerate(tokens):
            ids[row, : len(t.qwen_ids)] = torch.tensor(t.qwen_ids)
        hidden = self.qwen(input_ids=ids.to(device), use_cache=False).last_hidden_state.float().cpu()
        return [
            TextEncoding(
                qwen_hidden=hidden[row, : len(t.qwen_ids)].clone(),
                t5_ids=torch.tensor(t.t5_ids, dtype=torch.long),
                t5_weights=torch.tensor(t.t5_weights, dtype=torch.float32),
            )
            for row, t in enumerate(tokens)
        ]
