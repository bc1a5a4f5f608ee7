"""Memory and speed options on the tiny DiT (fp32, CPU): each must leave the loss and the LoRA gradients as they
are without it (exactly, except fp8, which changes the weights by design)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from library.anima.attention_backend import apply_sdpa_backends, resolve_attn_mode
from library.anima.block_swap import BlockSwap, enable_block_swap, validate_blocks_to_swap
from library.anima.fp8 import FP8_DTYPE, Fp8Linear, apply_fp8_base, dequantize, quantize
from library.anima.llm_adapter import LLMAdapterConfig
from library.anima.model import AnimaConfig, AnimaDiT
from library.errors import ConfigError

ADAPTER = LLMAdapterConfig(source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_heads=2, vocab_size=1000)
TINY = AnimaConfig(
    model_channels=64, num_blocks=4, num_heads=2, adaln_lora_dim=16, crossattn_emb_channels=32, adapter=ADAPTER
)
TARGETS = ("self_attn.q_proj", "cross_attn.k_proj", "mlp.layer2")


class LoRA(nn.Module):
    """Kohya-style: keeps the Linear, replaces its forward, calls the original. Up is non-zero so every
    LoRA gets a gradient through every other one."""

    def __init__(self, linear: nn.Linear, gen: torch.Generator) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(4, linear.in_features, generator=gen) / math.sqrt(linear.in_features))
        self.up = nn.Parameter(torch.randn(linear.out_features, 4, generator=gen) * 0.1)
        self.org_forward = linear.forward
        linear.forward = self.forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.org_forward(x) + F.linear(F.linear(x, self.down), self.up)


def build(seed: int = 0) -> AnimaDiT:
    model = AnimaDiT(TINY)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            param.copy_(1 + 0.2 * noise if "norm" in name else noise / param.shape[-1] ** 0.5)
    return model.requires_grad_(False)


def add_lora(model: AnimaDiT) -> nn.ModuleDict:
    gen = torch.Generator().manual_seed(5)
    return nn.ModuleDict(
        {
            f"{i}_{t.replace('.', '_')}": LoRA(block.get_submodule(t), gen)
            for i, block in enumerate(model.blocks)
            for t in TARGETS
        }
    )


def inputs(seed: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 16, 1, 8, 8, generator=gen), torch.tensor([0.3, 0.7]), torch.randn(2, 20, 32, generator=gen)


def step(model: AnimaDiT, lora: nn.ModuleDict, seed: int = 10) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    lora.zero_grad(set_to_none=True)
    loss = model(*inputs(seed)).square().mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in lora.named_parameters()}


def assert_equal(a: tuple[torch.Tensor, dict], b: tuple[torch.Tensor, dict]) -> None:
    assert torch.equal(a[0], b[0]), (a[0], b[0])
    assert a[1].keys() == b[1].keys() and len(a[1]) == 2 * len(TARGETS) * TINY.num_blocks
    for name, grad in a[1].items():
        assert torch.equal(grad, b[1][name]), name


# ---- gradient checkpointing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cpu_offload", [False, True])
def test_gradient_checkpointing_is_exact(cpu_offload):
    model = build()
    lora = add_lora(model)
    plain = step(model, lora)
    model.enable_gradient_checkpointing(cpu_offload=cpu_offload)
    assert_equal(plain, step(model, lora))


# ---- block swap ---------------------------------------------------------------------------------------------
class PoisonedSwap(BlockSwap):
    """Parked weights read as NaN and every move is logged, so a block used while parked spoils the result."""

    log: list[tuple[str, int]]

    def _fetch(self, master: torch.Tensor) -> torch.Tensor:
        return master.clone()

    def _parked(self, master: torch.Tensor) -> torch.Tensor:
        return torch.full_like(master, float("nan"))

    def _bring(self, index: int) -> None:
        if self._state.get(index) is not None and self._state[index].value == "parked":
            self.__dict__.setdefault("log", []).append(("in", index))
        super()._bring(index)

    def _park(self, index: int) -> None:
        if self._state.get(index) is not None and self._state[index].value != "parked":
            self.__dict__.setdefault("log", []).append(("out", index))
        super()._park(index)


def poisoned(model: AnimaDiT, n: int) -> PoisonedSwap:
    swap = PoisonedSwap(model.blocks, n, "cpu", "cpu")
    swap.log = []
    model.block_hooks = swap
    return swap


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("n", [1, 2])
def test_block_swap_is_exact_and_returns_to_the_start_layout(n, checkpointing):
    model = build()
    lora = add_lora(model)
    if checkpointing:
        model.enable_gradient_checkpointing()
    plain = [step(model, lora, seed) for seed in (10, 11)]
    swap = poisoned(model, n)
    assert swap.resident() == [0, 1, 2, 3][: 4 - n]
    for seed, expected in zip((10, 11), plain, strict=True):
        swap.log = []
        assert_equal(expected, step(model, lora, seed))
        assert swap.resident() == [0, 1, 2, 3][: 4 - n] and swap.misses == 0
    m = 4 - n  # forward: after block i < n, i out and m + i in; backward (one block of margin) mirrors it
    forward = [op for i in range(n) for op in (("out", i), ("in", m + i))]
    backward = [op for i in reversed(range(n)) for op in (("out", m + i), ("in", i))]
    assert swap.log == forward + backward


def test_block_swap_after_a_no_grad_forward_and_on_every_block_count():
    model = build()
    lora = add_lora(model)
    model.enable_gradient_checkpointing()
    expected = step(model, lora)
    swap = poisoned(model, 2)
    with torch.no_grad():
        model(*inputs())
    assert swap.resident() == [2, 3]  # the forward's end layout; the next forward restores the start
    assert_equal(expected, step(model, lora))
    assert swap.misses == 0


def test_enable_block_swap_places_the_model_and_hooks_it():
    model = build()
    swap = enable_block_swap(model, 2, "cpu")
    assert model.block_hooks is swap and swap.resident() == [0, 1]
    with pytest.raises(RuntimeError, match="frozen"):
        enable_block_swap(build().requires_grad_(True), 1, "cpu")


def test_blocks_to_swap_is_validated():
    with pytest.raises(ConfigError, match=r"--blocks_to_swap 27 .* 28 blocks.* between 0 and 26"):
        validate_blocks_to_swap(27, 28)
    validate_blocks_to_swap(26, 28)
    with pytest.raises(ConfigError, match=r"--blocks_to_swap 3 .* between 0 and 2"):
        enable_block_swap(build(), 3, "cpu")
    with pytest.raises(ConfigError, match="--blocks_to_swap -1"):
        validate_blocks_to_swap(-1, 28)


# ---- fp8 ------------------------------------------------------------------------------------------------------
def test_fp8_rounding_stays_within_the_e4m3_bound():
    """3 mantissa bits: |w - q·s| ≤ 2^-4 |w| for normal values, ≤ 2^-10 · s in the subnormal range."""
    w = torch.randn(256, 128, generator=torch.Generator().manual_seed(0)) * torch.logspace(-4, 0, 128)
    q, scale = quantize(w)
    assert q.dtype == FP8_DTYPE and scale.dtype == torch.float32
    err = (dequantize(q, scale, torch.float32) - w).abs()
    bound = torch.maximum(w.abs() * 2**-4, scale * 2**-10) * (1 + 1e-6)
    assert (err <= bound).all() and err.max() > 0


def test_fp8_base_stays_close_and_keeps_lora_working():
    """Tolerances: an e4m3 weight is off by ≤ 2^-4 relative (test above), ≈ 2^-5.3 RMS for Gaussian weights; a
    value that passes through k fp8 Linears carries about √k times that. The loss (a mean over the output) is
    held to 2^-4; the adapter's context (2 layers, ~6 Linears deep) and the LoRA gradients (forward and backward
    through ~20 Linears: √20 · 2^-5.3 ≈ 0.11) to 2^-3 in norm; and every LoRA gradient must keep its
    direction (cosine ≥ 0.95; small ones have a larger relative error). Measured: ~1%, ~8%, ~6%, ≥ 0.977."""
    gen = torch.Generator().manual_seed(3)
    source, ids = torch.randn(2, 7, 64, generator=gen), torch.randint(0, 1000, (2, 9), generator=gen)
    reference = build()
    ref_loss, ref_grads = step(reference, add_lora(reference))
    ref_context = reference.llm_adapter(source, ids)
    model = build()
    converted = apply_fp8_base(model, torch.float32)
    lora = add_lora(model)
    loss, grads = step(model, lora)
    assert converted == 4 * 10 + 2 * 10  # 10 Linears per DiT block (AdaLN kept), 10 per adapter block
    context = model.llm_adapter(source, ids)
    assert (context - ref_context).norm() <= 2**-3 * ref_context.norm()
    assert abs(loss - ref_loss) <= 2**-4 * ref_loss and not torch.equal(loss, ref_loss)
    flat, ref_flat = (torch.cat([g[k].flatten() for k in sorted(g)]) for g in (grads, ref_grads))
    assert flat.dtype == torch.float32 and torch.isfinite(flat).all()
    assert (flat - ref_flat).norm() <= 2**-3 * ref_flat.norm()
    for name, grad in grads.items():
        assert F.cosine_similarity(grad.flatten(), ref_grads[name].flatten(), dim=0) >= 0.95, name


def test_fp8_keeps_precise_parts_and_survives_the_trainer_cast():
    model = build()
    apply_fp8_base(model, torch.float32)
    q = model.blocks[0].self_attn.q_proj
    assert isinstance(q, nn.Linear) and type(q) is Fp8Linear and q.weight.dtype == FP8_DTYPE
    for keep in (
        "x_embedder.proj.1",
        "t_embedder.1.linear_1",
        "final_layer.linear",
        "blocks.0.adaln_modulation_mlp.1",
        "llm_adapter.out_proj",
    ):
        assert type(model.get_submodule(keep)) is nn.Linear, keep
    assert not any(name.endswith("weight_scale") for name in model.state_dict())
    before = q.weight.detach().clone()
    model.to("cpu", dtype=torch.bfloat16)
    assert q.weight.dtype == FP8_DTYPE and torch.equal(q.weight.view(torch.uint8), before.view(torch.uint8))
    assert q.weight_scale.dtype == torch.float32 and model.blocks[0].self_attn.q_norm.weight.dtype == torch.bfloat16
    out = model(*(t.bfloat16() for t in inputs()))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_fp8_must_come_before_the_network():
    model = build()
    add_lora(model)
    with pytest.raises(RuntimeError, match="before the network"):
        apply_fp8_base(model, torch.float32)


def test_fp8_with_block_swap_and_checkpointing_is_exact():
    model = build()
    apply_fp8_base(model, torch.float32)
    lora = add_lora(model)
    model.enable_gradient_checkpointing()
    expected = step(model, lora)
    swap = poisoned(model, 2)
    assert_equal(expected, step(model, lora))
    assert swap.misses == 0


# ---- attention backends ---------------------------------------------------------------------------------------
def test_attn_mode_names():
    assert resolve_attn_mode(None) is None and resolve_attn_mode("torch") is None
    assert resolve_attn_mode("math") == [torch.nn.attention.SDPBackend.MATH]
    assert resolve_attn_mode("sageattn") is None and resolve_attn_mode(None, xformers=True) is None  # SDPA's choice
    with pytest.raises(ConfigError, match="--attn_mode 'flashy' is unknown"):
        resolve_attn_mode("flashy")
    assert resolve_attn_mode("flash", xformers=True) == [torch.nn.attention.SDPBackend.FLASH_ATTENTION]


def test_attn_mode_restricts_every_attention_call_also_in_checkpoint_recompute():
    model = build()
    x = inputs()
    default = model(*x)
    try:
        apply_sdpa_backends(resolve_attn_mode("math"))
        assert torch.allclose(model(*x), default, atol=1e-5)
        # the recompute of a checkpointed block must use the same kernel as its forward (it runs in backward)
        model.enable_gradient_checkpointing()
        model.requires_grad_(False)
        x_grad = x[0].clone().requires_grad_(True)
        model(x_grad, *x[1:]).square().mean().backward()
        assert x_grad.grad is not None and torch.isfinite(x_grad.grad).all()
        apply_sdpa_backends(resolve_attn_mode("mem_efficient"))  # no CPU kernel: the restriction is real
        with pytest.raises(RuntimeError):
            build()(*x)
    finally:
        apply_sdpa_backends(None)
    assert torch.allclose(build()(*x), default, atol=1e-5)
