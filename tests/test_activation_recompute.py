"""The DiT recomputes its norms in backward instead of keeping fp32 copies (library/anima/layers.py
`recompute_in_backward`, blocks.py `norm_modulate`); the loss and every LoRA / norm-delta gradient must be what
the code gave before, when the norms' intermediates were kept.

Breaks these catch (each run once, each failed): `recompute_in_backward` calling `function` under
`torch.no_grad()` (no gradient reaches the LoRA before the norms); `_norm_modulate` casting its result to x's
dtype (bf16: the Linears' input gradients then sum in bf16, and the gradients move).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import library.anima.blocks as blocks
import library.anima.layers as layers
from library.anima.model import AnimaDiT
from networks import lora_anima

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from _saved_bytes import cuda_autocast_on_cpu  # noqa: E402
from make_tiny_anima import tiny  # noqa: E402


def _step(dtype: torch.dtype) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and gradients of one step of the tiny DiT (random weights) with a LoRA whose up weights are non-zero."""
    torch.manual_seed(0)
    dit = AnimaDiT(tiny().dit)
    with torch.no_grad():
        for name, param in dit.named_parameters():
            param.copy_(1 + 0.2 * torch.randn_like(param) if "norm" in name else
                        torch.randn_like(param) / param.shape[-1] ** 0.5)
    dit = dit.to(dtype).requires_grad_(False)
    network = lora_anima.create_network(1.0, 4, 4.0, None, [], dit)
    network.apply_to([], dit, False, True)
    with torch.no_grad():
        for name, param in network.named_parameters():
            param.copy_(0.1 * torch.randn_like(param)) if "lora_up" in name or "w_norm" in name else None
    x, context = torch.randn(2, 16, 1, 8, 8), torch.randn(2, 20, dit.config.crossattn_emb_channels)
    sigma = torch.tensor([0.3, 0.7])
    with cuda_autocast_on_cpu():  # also over backward, where the norms are recomputed (autocast as in the forward)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype != torch.float32):
            loss = dit(x.to(dtype), sigma.to(dtype), context.to(dtype)).float().square().mean()
        loss.backward()
    grads = {name: p.grad.clone() for name, p in network.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code before: the norms keep their intermediates for backward."""
    monkeypatch.setattr(layers, "recompute_in_backward", lambda function, *args: function(*args))
    monkeypatch.setattr(blocks, "norm_modulate",
                        lambda norm, x, shift, scale: blocks.modulate(norm(x), shift, scale))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_and_gradients_equal_the_kept_activation_code(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32, and bf16 with CUDA's autocast rules (LayerNorm in fp32): the same operations, so exactly equal."""
    loss, grads = _step(dtype)
    with monkeypatch.context() as patch:
        _as_before(patch)
        loss_before, grads_before = _step(dtype)
    assert len(grads) == len(grads_before) > 20  # every DiT block's LoRA and norm deltas
    assert any("w_norm" in name for name in grads) and any("lora_down" in name for name in grads)
    assert torch.equal(loss, loss_before), (loss, loss_before)
    for name, grad in grads_before.items():
        assert torch.equal(grads[name], grad), name
