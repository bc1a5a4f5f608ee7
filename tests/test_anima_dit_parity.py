"""Our DiT + llm_adapter against diffusers' independent implementation, with the same random tiny weights.

diffusers' `CosmosTransformer3DModel` builds its DiT QK RMSNorms with eps 1e-5 (its `Attention` default) where
ComfyUI, kohya and the original Cosmos use 1e-6; we follow ComfyUI, so the reference gets 1e-6 here.
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from diffusers import AnimaTextConditioner, CosmosTransformer3DModel
from diffusers.loaders.single_file_utils import convert_cosmos_transformer_checkpoint_to_diffusers
from diffusers.models.transformers import transformer_cosmos

from library.anima.llm_adapter import LLMAdapterConfig
from library.anima.model import AnimaConfig, AnimaDiT

ADAPTER = LLMAdapterConfig(source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_heads=2, vocab_size=1000)
TINY = AnimaConfig(
    model_channels=64, num_blocks=2, num_heads=2, adaln_lora_dim=16, crossattn_emb_channels=32, adapter=ADAPTER
)
CONTEXT_ROWS = 512
TOL = 1e-5


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights of a realistic scale; norm weights away from 1 so a wrong norm shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            param.copy_(1 + 0.2 * noise if "norm" in name else noise / param.shape[-1] ** 0.5)


@pytest.fixture(autouse=True)
def no_torchvision(monkeypatch):
    """diffusers resizes the padding mask with torchvision, which does not import here; nearest = interpolate."""
    resize = lambda tensor, size, interpolation: F.interpolate(tensor, size=size, mode="nearest")  # noqa: E731
    shim = types.SimpleNamespace(
        functional=types.SimpleNamespace(resize=resize), InterpolationMode=types.SimpleNamespace(NEAREST=None)
    )
    monkeypatch.setattr(transformer_cosmos, "transforms", shim, raising=False)


@pytest.fixture(scope="module")
def models():
    ours = AnimaDiT(TINY).eval()
    randomize(ours, 0)
    sd = ours.state_dict()
    dit = CosmosTransformer3DModel(
        in_channels=16,
        out_channels=16,
        num_attention_heads=2,
        attention_head_dim=32,
        num_layers=2,
        mlp_ratio=4.0,
        text_embed_dim=32,
        adaln_lora_dim=16,
        patch_size=(1, 2, 2),
        rope_scale=(1.0, 4.0, 4.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
    ).eval()
    dit_sd = {"net." + k: v.clone() for k, v in sd.items() if not k.startswith("llm_adapter.")}
    dit.load_state_dict(convert_cosmos_transformer_checkpoint_to_diffusers(dit_sd), strict=True)
    for block in dit.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            attn.norm_q.eps = attn.norm_k.eps = 1e-6
    cond = AnimaTextConditioner(
        source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_attention_heads=2, target_vocab_size=1000
    ).eval()
    p = "llm_adapter."
    cond.load_state_dict({k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}, strict=True)
    return ours, dit, cond


def captions(lengths: list[tuple[int, int]], seed: int):
    """Padded batch for (T5 length, Qwen length) pairs; Qwen length 0 = empty caption (all masked, zeros)."""
    gen = torch.Generator().manual_seed(seed)
    lt, ls = max(t for t, _ in lengths), max(max(s for _, s in lengths), 3)
    ids = torch.zeros(len(lengths), lt, dtype=torch.long)
    source = torch.zeros(len(lengths), ls, 64)
    t_mask = torch.zeros(len(lengths), lt, dtype=torch.bool)
    s_mask = torch.zeros(len(lengths), ls, dtype=torch.bool)
    for row, (t_len, s_len) in enumerate(lengths):
        ids[row, : t_len - 1] = torch.randint(2, 1000, (t_len - 1,), generator=gen)
        ids[row, t_len - 1] = 1  # </s>
        t_mask[row, :t_len] = True
        source[row, :s_len] = torch.randn(s_len, 64, generator=gen)
        s_mask[row, :s_len] = True
    return source, ids, t_mask, s_mask


def reference(dit, x, sigma, context):
    zeros = torch.zeros(1, 1, *x.shape[-2:])
    return dit(x, sigma, context, padding_mask=zeros).sample


@pytest.mark.parametrize("latent_hw", [(16, 16), (8, 12)])
@pytest.mark.parametrize("lengths", [[(7, 5), (19, 11)], [(1, 0)]], ids=["two-lengths", "empty"])
@torch.no_grad()
def test_dit_and_adapter_match_diffusers(models, latent_hw, lengths):
    ours, dit, cond = models
    source, ids, t_mask, s_mask = captions(lengths, seed=len(lengths))
    context = ours.llm_adapter(source, ids, t_mask, s_mask)
    assert not torch.isnan(context).any()
    context = F.pad(context, (0, 0, 0, CONTEXT_ROWS - context.shape[1]))
    expected_context = cond(source, ids, t_mask, s_mask)
    assert expected_context.shape == context.shape == (len(lengths), CONTEXT_ROWS, 32)
    assert (context - expected_context).abs().max() <= TOL

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(len(lengths), 16, 1, *latent_hw, generator=gen)
    sigma = torch.linspace(0.2, 0.9, len(lengths))
    out = ours(x, sigma, context)
    assert out.shape == x.shape
    assert out.abs().max() > 0.1
    assert (out - reference(dit, x, sigma, context)).abs().max() <= TOL


@torch.no_grad()
def test_context_padding_to_512_changes_the_output(models):
    """Zero rows still take softmax weight in the unmasked cross-attention, so the pad length matters (§4.2)."""
    ours, dit, _ = models
    source, ids, t_mask, s_mask = captions([(9, 6)], seed=3)
    context = ours.llm_adapter(source, ids, t_mask, s_mask)
    padded = F.pad(context, (0, 0, 0, CONTEXT_ROWS - context.shape[1]))
    x = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.5])
    unpadded_out, padded_out = ours(x, sigma, context), ours(x, sigma, padded)
    assert (unpadded_out - reference(dit, x, sigma, context)).abs().max() <= TOL
    assert (padded_out - unpadded_out).abs().max() > 1e-3


@torch.no_grad()
def test_adapter_without_masks_matches_diffusers(models):
    """ComfyUI's inference path: unpadded ids and states, no masks."""
    ours, _, cond = models
    source, ids, _, _ = captions([(12, 8)], seed=5)
    ours_context = ours.llm_adapter(source, ids)
    assert (ours_context - cond(source, ids)[:, :12]).abs().max() <= TOL


@torch.no_grad()
def test_odd_latent_is_padded_circularly_and_cropped(models):
    ours = models[0]
    x = torch.randn(1, 16, 1, 7, 9, generator=torch.Generator().manual_seed(8))
    sigma, context = torch.tensor([0.4]), torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(9))
    padded = F.pad(x, (0, 1, 0, 1, 0, 0), mode="circular")
    out = ours(x, sigma, context)
    assert out.shape == x.shape
    assert torch.equal(out, ours(padded, sigma, context)[..., :7, :9])


@pytest.mark.parametrize("cpu_offload", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(cpu_offload):
    model = AnimaDiT(TINY)
    randomize(model, 1)
    gen = torch.Generator().manual_seed(10)
    x, context = torch.randn(2, 16, 1, 8, 8, generator=gen), torch.randn(2, 20, 32, generator=gen)
    sigma = torch.tensor([0.3, 0.7])

    def grads():
        model.zero_grad()
        model(x, sigma, context).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.enable_gradient_checkpointing(cpu_offload=cpu_offload)
    checkpointed = grads()
    model.disable_gradient_checkpointing()
    assert plain.keys() == checkpointed.keys() and len(plain) > 30
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name


def test_bf16_forward_and_backward_run_in_bf16():
    model = AnimaDiT(TINY).to(torch.bfloat16)
    gen = torch.Generator().manual_seed(11)
    x, context = torch.randn(1, 16, 1, 4, 4, generator=gen), torch.randn(1, 5, 32, generator=gen)
    out = model(x, torch.tensor([0.5]), context)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert model.blocks[0].self_attn.q_norm.weight.grad.dtype == torch.bfloat16


def test_model_has_no_buffers_and_builds_on_meta():
    with torch.device("meta"):
        model = AnimaDiT(TINY)
    assert list(model.buffers()) == []
    assert all(p.is_meta for p in model.parameters())
    assert type(model.blocks[0]).__name__ == "Block"
    assert type(model.llm_adapter.blocks[0]).__name__ == "LLMAdapterTransformerBlock"
