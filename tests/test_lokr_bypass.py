"""LoKr's bypass forward (networks/_kron_bypass.py) against the whole-delta formula written out here.

Breaks these catch (each run once, each failed): `forward = AdapterModule.forward_whole_delta` back in
networks/_lokr_module.py (the FLOP count is the full-width matmul's again); the bypass multiplying by w1ᵀ
instead of w1 (outputs differ); the rank-dropout mask drawn per input column (the seeded outputs differ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from networks._lokr_module import LoKrModule, lokr_layout


def _module(rank_dropout: float | None = None) -> tuple[LoKrModule, torch.nn.Linear]:
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 64)
    module = LoKrModule("blocks.0.mlp.layer1", linear, lokr_layout(64, 48, 2, 4, True, False), 3.0,
                        multiplier=0.7, rank_dropout=rank_dropout)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_()
    module.apply_to_org()
    return module, linear


def _whole_delta(module: LoKrModule, linear: torch.nn.Linear, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    delta = torch.kron(module._w1(), module._w2()) * module.scale
    if keep is not None:
        delta = delta * keep
    return F.linear(x, linear.weight, linear.bias) + F.linear(x, delta * module.multiplier)


def test_bypass_equals_the_whole_delta_values_and_gradients() -> None:
    module, linear = _module()
    x = torch.randn(2, 5, 48, requires_grad=True)
    y = linear(x)
    expected = _whole_delta(module, linear, x, None)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    params = [x, *module.parameters()]
    got = torch.autograd.grad(y.square().sum(), params)
    want = torch.autograd.grad(expected.square().sum(), params)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_rank_dropout_drops_the_same_output_rows_from_the_same_seed() -> None:
    module, linear = _module(rank_dropout=0.5)
    x = torch.randn(3, 48)
    torch.manual_seed(5)
    y = linear(x)
    torch.manual_seed(5)
    keep = (torch.rand(64, 1) > 0.5).float()
    torch.testing.assert_close(y, _whole_delta(module, linear, x, keep), rtol=1e-5, atol=1e-5)


def test_the_update_costs_far_less_than_the_full_width_matmul() -> None:
    module, linear = _module()
    x = torch.randn(16, 48)
    with FlopCounterMode(display=False) as counter:
        linear(x)
    full = 2 * 16 * 48 * 64  # the base Linear; the whole delta would cost as much again
    w2 = 2 * 16 * 2 * 12  # lokr_w2_a [16, 2] @ lokr_w2_b [2, 12]
    bypass = 2 * 16 * (4 * 12 * 16 + 4 * 4 * 16)  # X [4, 12] @ w2ᵀ, then w1 [4, 4] @ that, per row of x
    assert counter.get_total_flops() == full + w2 + bypass < 1.5 * full
