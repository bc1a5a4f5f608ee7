"""bench/activation_memory.py in its reduced mode (the tiny widths, 128², 8 context rows; the 2B figures are in
bench/RESULTS.md): what one DiT block keeps for backward equals a count written out here from the block's code,
and checkpointing keeps only the block inputs, in host memory with CPU offload.

Breaks these catch (each run once, each failed): `RMSNorm.forward` without `recompute_in_backward` (its fp32
copies are kept again: the block's count grows); the bench without `cuda_autocast_on_cpu` (LayerNorm stays in
bf16, the LoRAs share one bf16 input: the count shrinks); `HostMoves` not marking `.to("cpu")` copies as host
memory (the offloaded inputs count on the device).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

L, N = (128 // 16) ** 2, 8  # image tokens (latent 16², patch 2), context rows
D, H, HEAD, MLP, CONTEXT, RANK = 64, 2, 32, 256, 32, 4  # tools/make_tiny_anima.py tiny(), --rank 4
BF16, FP32 = 2, 4


def lora(rows: int, fan_in: int, fan_out: int, input_needs_grad: bool = True) -> int:
    """A LoRA's saved bytes: its bf16 hidden (rows x rank) and its autocast weight copies (down only when its
    input needs a gradient, i.e. not on the context)."""
    return (rows * RANK + fan_out * RANK + (RANK * fan_in if input_needs_grad else 0)) * BF16


def one_block() -> int:
    """Bytes one DiT block keeps, from blocks.py: per sub-layer the input x and the (B, 3D) modulation
    (norm_modulate keeps only these); under CUDA autocast the modulated input is fp32, so every LoRA keeps its own
    bf16 copy of it; q and k before their RMSNorms (and each norm's shifted weight); SDPA's q, k, v, output and
    fp32 logsumexp (merging heads is a view of its output); the LoRAs; the sub-layer output the gate multiplies."""
    sublayer = (3 * D + L * D) * BF16  # modulation + x
    self_attn = (sublayer + 3 * L * D * BF16  # the q, k, v LoRAs' bf16 copies of the modulated input
                 + 2 * (L * D + HEAD) * BF16  # q and k before their norms, the norms' weights
                 + 4 * L * D * BF16 + H * L * FP32  # SDPA: q, k (after RoPE), v, output; logsumexp
                 + 4 * lora(L, D, D) + L * D * BF16)  # q, k, v, output_proj LoRAs; the gated output
    cross_attn = (sublayer + L * D * BF16 + (L * D + N * D + 2 * HEAD) * BF16  # LoRA input copy; q, k before norms
                  + (2 * L * D + 2 * N * D) * BF16 + H * L * FP32  # SDPA: q, k, v, output; logsumexp
                  + 2 * lora(L, D, D) + 2 * lora(N, CONTEXT, D, input_needs_grad=False) + L * D * BF16)
    mlp = (sublayer + L * D * BF16 + 2 * L * MLP * BF16  # LoRA input copy; layer1 output, GELU output
           + lora(L, D, MLP) + lora(L, MLP, D) + L * D * BF16)
    return self_attn + cross_attn + mlp


def test_saved_bytes_per_block_match_the_count_and_checkpointing_keeps_the_inputs() -> None:
    import activation_memory

    results = activation_memory.main(["--size", "tiny", "--resolution", "128", "--rank", str(RANK),
                                      "--context_rows", str(N), "--options", "none,gc,gc_offload", "--out", "-"])
    none, gc, offload = results
    assert none.per_block[-1] == one_block()  # the first block also holds what all blocks share (RoPE, context)
    assert gc.per_block[-1] == L * D * BF16  # the block's input only
    assert gc.device < none.device / 5
    assert offload.per_block[-1] == 0 and offload.host == len(offload.per_block) * L * D * BF16
    assert offload.device == gc.device - offload.host
