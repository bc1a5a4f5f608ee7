"""networks.lokr_anima: shapes, stored alpha and scale as LyCORIS 4.1.3 makes them, ΔW against its math."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
from _fake_anima import make_batch, make_model, one_thread
from lycoris.functional import lokr as lycoris_lokr
from lycoris.functional.general import factorization as lycoris_factorization
from lycoris.modules.lokr import LokrModule

from library.errors import ConfigError
from networks import lokr_anima
from networks._lokr_module import LoKrModule, factorization, lokr_layout

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def create(model: nn.Module, dim: int = 4, alpha: float = 2.0, **kwargs):
    return lokr_anima.create_network(1.0, dim, alpha, None, [], model, **kwargs)


def layouts(network) -> dict:
    return {a.path: a.layout for a in network.adapters if a.kind == "lokr"}


def test_factorization_matches_lycoris():
    assert factorization(2048, 8) == (8, 256)
    assert factorization(2048, -1) == (32, 64)
    assert factorization(68, 8) == (4, 17)
    for dim, factor in itertools.product(range(1, 400), (-1, 1, 2, 3, 4, 8, 16, 32)):
        assert factorization(dim, factor) == lycoris_factorization(dim, factor), (dim, factor)


CASES = [  # (out, in, rank, factor, decompose_both, full_matrix)
    (2048, 2048, 32, 8, False, False),
    (2048, 68, 32, 8, False, False),
    (2048, 2048, 32, -1, False, False),
    (64, 256, 4, 8, False, False),
    (64, 32, 1, 8, True, False),
    (64, 32, 2, 8, True, False),
    (96, 48, 2, -1, True, False),
    (64, 32, 2, 8, True, True),
    (64, 32, 100000, 8, False, False),
    (32, 16, 16, 4, False, False),
]


@pytest.mark.parametrize(("out", "inp", "rank", "factor", "both", "full"), CASES)
def test_layout_alpha_and_scale_match_lycoris_module(out, inp, rank, factor, both, full):
    linear = nn.Linear(inp, out, bias=False)
    theirs = LokrModule("x", linear, lora_dim=rank, alpha=16.0, factor=factor, decompose_both=both, full_matrix=full)
    ours = LoKrModule("x", linear, lokr_layout(out, inp, rank, factor, both, full), alpha=16.0)
    their_sd = {k: v for k, v in theirs.state_dict().items() if k.startswith(("lokr_", "alpha"))}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in their_sd.items()}
    assert float(ours.alpha) == float(their_sd["alpha"])
    assert ours.scale == pytest.approx(theirs.scale)


@pytest.mark.parametrize(("out", "inp", "rank", "factor", "both", "full"), [c for c in CASES if c[0] < 2048])
def test_delta_matches_lycoris_functional(out, inp, rank, factor, both, full):
    # float64: the bypass forward and x @ ΔWᵀ sum in different orders, which fp32 at 1e-5 failed on ~7 % of draws
    linear = nn.Linear(inp, out, bias=False, dtype=torch.float64)
    module = LoKrModule("x", linear, lokr_layout(out, inp, rank, factor, both, full), alpha=3.0).double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    sd = module.state_dict()
    weights = [sd.get(name) for name in ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")]
    theirs = lycoris_lokr.diff_weight(*weights, None, gamma=float(module.alpha), backend="torch")
    torch.testing.assert_close(module.delta_weight(), theirs)
    x = torch.randn(2, 3, inp, dtype=torch.float64)
    base = linear(x)
    module.apply_to_org()
    torch.testing.assert_close(linear(x), base + x @ theirs.T, rtol=1e-9, atol=1e-9)


def test_defaults_factor_8_and_both_whole_trains_with_scale_1():
    network = create(make_model(), dim=4, alpha=1.0)  # 32 = 4 x 8: w2 [8, 8], rank 4 is not < 8 / 2
    layout = layouts(network)["blocks.0.self_attn.q_proj"]
    assert (layout.w1, layout.w2, layout.split_w1, layout.split_w2) == ((4, 4), (8, 8), False, False)
    module = next(a for a in network.adapters if a.path == "blocks.0.self_attn.q_proj")
    assert module.scale == 1.0 and float(module.alpha) == 4.0
    network = create(make_model(), dim=2, alpha=1.0)
    module = next(a for a in network.adapters if a.path == "blocks.0.self_attn.q_proj")
    assert module.layout.split_w2 and module.scale == 0.5 and float(module.alpha) == 1.0


def test_full_matrix_sentinel_keeps_the_dim():
    network = create(make_model(), dim=100000, alpha=1.0)
    assert all(not (lay.split_w1 or lay.split_w2) for lay in layouts(network).values())
    assert {a.scale for a in network.adapters if a.kind == "lokr"} == {1.0}
    assert network.dim == 100000


def test_options_and_seed_aliases_are_parsed_as_booleans():
    on = layouts(create(make_model(), dim=1, factor="4", decompose_both="True"))["blocks.0.mlp.layer1"]
    off = layouts(create(make_model(), dim=1, factor="4", decompose_both="False"))["blocks.0.mlp.layer1"]
    alias = layouts(create(make_model(), dim=1, lokr_factor="4", lokr_decompose_both="true"))["blocks.0.mlp.layer1"]
    assert on.split_w1 and not off.split_w1 and alias == on
    full = layouts(create(make_model(), dim=1, lokr_full_matrix="1"))["blocks.0.mlp.layer1"]
    assert not (full.split_w1 or full.split_w2)
    dropped = create(make_model(), lokr_rank_dropout="0.25", lokr_module_dropout="0.5").adapters[0]
    assert (dropped.rank_dropout, dropped.module_dropout) == (0.25, 0.5)
    with pytest.raises(ConfigError, match="full_matrix"):
        create(make_model(), full_matrix="yes please")
    with pytest.raises(ConfigError, match="factor"):
        create(make_model(), factor="0")


def test_rank_and_module_dropout_only_in_training():
    linear = nn.Linear(16, 32, bias=False)
    module = LoKrModule("x", linear, lokr_layout(32, 16, 2, 4, False, False), alpha=2.0, rank_dropout=0.5)
    with torch.no_grad():
        module.lokr_w2_b.normal_()
    module.apply_to_org()
    x = torch.randn(3, 16)
    module.eval()
    clean = linear(x)
    module.train()
    torch.manual_seed(0)
    assert not torch.allclose(linear(x), clean)
    module.rank_dropout, module.module_dropout = None, 1.0
    torch.testing.assert_close(linear(x), module._org_forward(x))


def test_lokr_network_trains_every_module():
    model = make_model(checkpointing=True)
    network = create(model, dim=2, factor="4", decompose_both="true")
    network.apply_to([], model)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    batch = make_batch()
    for _ in range(2):
        optimizer.zero_grad()
        model(*batch).square().mean().backward()
        optimizer.step()
    for adapter in network.adapters:
        assert adapter.delta_weight().abs().sum() > 0, adapter.path
