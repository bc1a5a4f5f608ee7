"""The analytic minimum FLOPs of one frozen-base LoRA training step of Anima, term by term (issue 19 point 2).

Why: a FLOP count is only a finding when something says what the step must compute. This is that something,
written from the configuration alone (no model is built), so `bench/step_flops.py` can compare torch's count of
the trainer's own step with it and name any excess. Batch 1, FLOPs = 2 per multiply-add.

Every term, for a Linear of `m` rows, `i` inputs, `o` outputs and a rank-`r` LoRA on it:
- forward 2·m·i·o, plus the LoRA's down and up products 2·m·r·(i + o);
- input gradient 2·m·i·o, plus the LoRA's path back to its input 2·m·r·i, only where the input carries a
  gradient (something trained lies upstream): never for the adapter's cross-attention k/v (cached Qwen3 states),
  never for the x-embedder (noisy latents), for the DiT's cross-attention k/v only when the context does;
- no weight gradient of a frozen Linear; the LoRA's own weight gradients 2·m·r·o (up) and 2·m·r·i (down), with
  the gradient of its hidden rows 2·m·r·o on the way.
Attention of `q` query rows over `k` key rows of width `d`: forward 4·q·k·d (scores and values); backward with the
probabilities kept 8·q·k·d (dV, dP, dQ, dK), or 4·q·k·d (dP, dQ) where the keys and values carry no gradient,
none where nothing before it trains (the adapter's, when no adapter part trains).
The flash kernel recomputes the scores in backward and computes dK, dV anyway: that is reported apart
(`bench/step_flops.py`), not charged here.
The parts: 28 DiT blocks over N image tokens (self-attention q/k/v/output, cross-attention q/output on the tokens
and k/v on the L context rows, the MLP), the x-embedder and final layer over N tokens, the per-sample timestep
embedder (no input gradient: it reads the sinusoid) and AdaLN modulations (m = 1); the llm_adapter's 6 blocks over the caption's T5 tokens with
cross-attention to its Qwen3 tokens, and its output projection. Block 0's self-attention inputs (the DiT's and the
adapter's) carry a gradient only when a norm before them trains (`train_norm`). Checkpointing adds one forward of
the DiT blocks (LoRA products included); the adapter and the embedders are not checkpointed.
"""

from __future__ import annotations

import dataclasses

from library.anima.model import AnimaConfig


@dataclasses.dataclass(frozen=True)
class Trained:
    """What the step trains: the LoRA rank on the default targets, and the two switches that change the graph."""

    rank: int
    llm_adapter: bool = True  # networks' train_llm_adapter default
    norm: bool = True  # --train_norm default: every RMSNorm scale


@dataclasses.dataclass
class Minimum:
    """FLOPs per kind of work; `total` is what the step must compute."""

    linear_forward: float = 0.0
    linear_input_grad: float = 0.0
    lora_forward: float = 0.0
    lora_backward: float = 0.0
    attention_forward: float = 0.0
    attention_backward: float = 0.0
    recompute: float = 0.0

    @property
    def total(self) -> float:
        return sum(dataclasses.astuple(self))

    def linear(self, m: int, i: int, o: int, input_grad: bool, rank: int = 0) -> None:
        self.linear_forward += 2 * m * i * o
        self.linear_input_grad += 2 * m * i * o if input_grad else 0
        self.lora_forward += 2 * m * rank * (i + o)
        self.lora_backward += 2 * m * rank * (2 * o + i + (i if input_grad else 0))

    def attention(self, q: int, k: int, d: int, kv_grad: bool, q_grad: bool = True) -> None:
        self.attention_forward += 4 * q * k * d
        self.attention_backward += ((8 if kv_grad else 4) if q_grad else 0) * q * k * d


def _dit_block(part: Minimum, config: AnimaConfig, tokens: int, rows: int, trained: Trained, first: bool) -> None:
    d, r = config.model_channels, trained.rank
    context_grad = trained.llm_adapter or trained.norm
    stream_grad = trained.norm or not first  # block 0's input: trained only through t_embedding_norm
    for _ in range(3):  # self-attention q, k, v
        part.linear(tokens, d, d, stream_grad, r)
    part.linear(tokens, d, d, True, r)  # self-attention output
    part.attention(tokens, tokens, d, True)
    part.linear(tokens, d, d, True, r)  # cross-attention q
    for _ in range(2):  # cross-attention k, v on the context rows
        part.linear(rows, config.crossattn_emb_channels, d, context_grad, r)
    part.linear(tokens, d, d, True, r)  # cross-attention output
    part.attention(tokens, rows, d, context_grad)
    hidden = int(d * config.mlp_ratio)
    part.linear(tokens, d, hidden, True, r)
    part.linear(tokens, hidden, d, True, r)
    for _ in range(3):  # AdaLN modulations, per sample: dim -> adaln_lora_dim -> 3·dim
        part.linear(1, d, config.adaln_lora_dim, trained.norm)
        part.linear(1, config.adaln_lora_dim, 3 * d, trained.norm)


def _adapter(part: Minimum, config: AnimaConfig, t5_tokens: int, qwen_tokens: int, trained: Trained) -> None:
    a = config.adapter
    d, r = a.model_dim, trained.rank if trained.llm_adapter else 0
    grad = trained.llm_adapter or trained.norm  # anything in the adapter trains: its rows need gradients
    for index in range(a.num_layers):
        stream = grad and (trained.norm or index > 0)
        for _ in range(3):
            part.linear(t5_tokens, d, d, stream, r)
        part.linear(t5_tokens, d, d, grad, r)  # self-attention o
        part.attention(t5_tokens, t5_tokens, d, grad, grad)
        part.linear(t5_tokens, d, d, grad, r)  # cross-attention q
        for _ in range(2):  # cross-attention k, v on the cached Qwen3 states: no input gradient, ever
            part.linear(qwen_tokens, a.source_dim, d, False, r)
        part.linear(t5_tokens, d, d, grad, r)  # cross-attention o
        part.attention(t5_tokens, qwen_tokens, d, False, grad)
        hidden = int(d * a.mlp_ratio)
        part.linear(t5_tokens, d, hidden, grad, r)
        part.linear(t5_tokens, hidden, d, grad, r)
    part.linear(t5_tokens, d, a.target_dim, grad)  # out_proj: not a LoRA target


def step_minimum(config: AnimaConfig, resolution: int, trained: Trained, checkpointing: bool,
                 t5_tokens: int, qwen_tokens: int, context_rows: int = 512) -> Minimum:
    """The minimum FLOPs of one step at batch 1, `resolution`² pixels (module docstring: every term)."""
    tokens = (resolution // 8 // config.patch_spatial) ** 2
    rows = max(context_rows, t5_tokens)
    d = config.model_channels
    blocks = Minimum()
    for index in range(config.num_blocks):
        _dit_block(blocks, config, tokens, rows, trained, index == 0)
    part = dataclasses.replace(blocks)
    if checkpointing:
        part.recompute = blocks.linear_forward + blocks.lora_forward + blocks.attention_forward
    patch = config.patch_spatial ** 2 * config.patch_temporal
    part.linear(tokens, patch * (config.in_channels + 1), d, False)  # x-embedder (latents + mask channel)
    part.linear(1, d, d, False)  # timestep embedder, on the sinusoid: nothing before it trains
    part.linear(1, d, 3 * d, False)
    part.linear(1, d, config.adaln_lora_dim, trained.norm)  # final layer's modulation
    part.linear(1, config.adaln_lora_dim, 2 * d, trained.norm)
    part.linear(tokens, d, patch * config.out_channels, True)  # final layer
    if config.adapter is not None:
        _adapter(part, config, t5_tokens, qwen_tokens, trained)
    return part
