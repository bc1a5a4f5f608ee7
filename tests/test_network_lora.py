"""networks.lora_anima: targets, network_args, LoRA math (against LyCORIS), training, optimizer groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from _fake_anima import DEFAULT_LINEARS, make_batch, make_model, one_thread
from lycoris.functional import locon

from library.errors import ConfigError
from networks import lora_anima
from networks._lora_module import LoRAModule

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def create(model: nn.Module, dim: int | None = 4, alpha: float | None = 2.0, **kwargs):
    return lora_anima.create_network(1.0, dim, alpha, None, [], model, **kwargs)


def linear_paths(network) -> list[str]:
    return [a.path for a in network.adapters if a.kind == "lora"]


def norm_paths(network) -> list[str]:
    return [a.path for a in network.adapters if a.kind == "norm"]


def randomize(network, seed: int = 3) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_default_targets_are_attention_mlp_adapter_and_norm_scales():
    model = make_model()
    network = create(model)
    assert sorted(linear_paths(network)) == sorted(DEFAULT_LINEARS)
    assert "llm_adapter.out_proj" not in linear_paths(network)
    norms = norm_paths(network)
    assert len(norms) == 24  # 2 blocks x 4 q/k norms, t_embedding_norm, 2 adapter blocks x 7, llm_adapter.norm
    assert "t_embedding_norm" in norms and "llm_adapter.norm" in norms
    assert not any("layer_norm" in path for path in norms)  # affine-less LayerNorms have nothing to train


@pytest.mark.parametrize("off", ["False", "false", "0"])
def test_train_flags_are_booleans(off):
    network = create(make_model(), train_llm_adapter=off, train_norm=off)
    assert sorted(linear_paths(network)) == sorted(p for p in DEFAULT_LINEARS if not p.startswith("llm_adapter."))
    assert norm_paths(network) == []


def test_bad_boolean_names_the_option():
    with pytest.raises(ConfigError, match="train_norm"):
        create(make_model(), train_norm="maybe")


def test_include_and_exclude_patterns():
    network = create(
        make_model(),
        exclude_patterns=r"['blocks\.1\..*', 'llm_adapter\..*']",
        include_patterns=r"['llm_adapter\.out_proj', 'blocks\.1\.mlp\.layer1']",
    )
    paths = linear_paths(network)
    assert "llm_adapter.out_proj" in paths and "blocks.1.mlp.layer1" in paths
    assert not any(p.startswith("blocks.1.") and p != "blocks.1.mlp.layer1" for p in paths)
    assert not any(p.startswith("llm_adapter.blocks") for p in paths)
    assert not any(p.startswith(("blocks.1.", "llm_adapter.")) for p in norm_paths(network))


def test_zero_targets_is_a_config_error_naming_the_patterns():
    with pytest.raises(ConfigError, match=r"nothing_matches_this|\.\*"):
        create(make_model(), exclude_patterns="['.*']", include_patterns="['nothing_matches_this']")


def test_defaults_and_per_module_dims_and_alphas():
    network = create(make_model(), dim=None, alpha=None)
    assert {(a.rank, float(a.alpha)) for a in network.adapters if a.kind == "lora"} == {(4, 1.0)}
    network = create(
        make_model(),
        dim=4,
        alpha=2.0,
        network_reg_dims=r"blocks\.0\..*=8,llm_adapter\..*=2",
        network_reg_alphas=r"blocks\.0\.mlp\..*=16",
    )
    by_path = {a.path: a for a in network.adapters}
    assert (by_path["blocks.0.self_attn.q_proj"].rank, float(by_path["blocks.0.self_attn.q_proj"].alpha)) == (8, 2.0)
    assert (by_path["blocks.0.mlp.layer1"].rank, float(by_path["blocks.0.mlp.layer1"].alpha)) == (8, 16.0)
    assert by_path["blocks.0.mlp.layer1"].scale == 2.0
    assert (by_path["blocks.1.mlp.layer1"].rank, by_path["blocks.1.mlp.layer1"].scale) == (4, 0.5)
    assert by_path["llm_adapter.blocks.0.mlp.0"].rank == 2


def test_lora_delta_matches_lycoris_and_the_patched_forward():
    linear = nn.Linear(24, 40, bias=False)
    module = LoRAModule("x", linear, rank=6, alpha=3.0)
    torch.nn.init.normal_(module.lora_up.weight)
    ours = module.delta_weight()
    theirs = locon.diff_weight(module.lora_down.weight, module.lora_up.weight, None, gamma=3.0 / 6, backend="torch")
    torch.testing.assert_close(ours, theirs)
    x = torch.randn(3, 5, 24)
    base = linear(x)
    module.apply_to_org()
    module.multiplier = 0.7
    torch.testing.assert_close(linear(x), base + 0.7 * x @ ours.T)


def test_dropouts_apply_only_in_training_and_work_on_5d_input():
    linear = nn.Linear(8, 8, bias=False)
    module = LoRAModule("x", linear, rank=4, alpha=4.0, rank_dropout=0.5, module_dropout=None)
    torch.nn.init.normal_(module.lora_up.weight)
    module.apply_to_org()
    x = torch.randn(2, 1, 3, 3, 8)
    module.eval()
    clean = linear(x)
    module.train()
    torch.manual_seed(0)
    dropped = linear(x)
    assert dropped.shape == clean.shape and not torch.allclose(dropped, clean)
    skip = LoRAModule("y", nn.Linear(8, 8, bias=False), rank=4, alpha=4.0, module_dropout=1.0)
    torch.nn.init.normal_(skip.lora_up.weight)
    base = skip.org_module(x)
    skip.apply_to_org()
    torch.testing.assert_close(skip.org_module(x), base)


def test_network_registers_only_adapter_tensors():
    model = make_model()
    network = create(model)
    keys = network.state_dict().keys()
    assert len(list(network.parameters())) == 2 * 40 + 24
    assert all(k.endswith(("lora_down.weight", "lora_up.weight", "alpha", "w_norm")) for k in keys)
    assert len(network.get_trainable_params()) == len(list(network.parameters()))
    network.apply_to([], model)
    assert set(model.state_dict()) == set(make_model().state_dict())  # the DiT's own keys are untouched


def test_training_with_gradient_checkpointing_reaches_every_adapter():
    plain, checkpointed = make_model(checkpointing=False), make_model(checkpointing=True)
    batch = make_batch()
    grads = []
    for model in (plain, checkpointed):
        torch.manual_seed(5)
        network = create(model)
        network.apply_to([], model)
        network.prepare_grad_etc(None, model)
        network.on_epoch_start(None, model)
        model(*batch).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in network.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad)
        if name.endswith(("lora_up.weight", "w_norm")):
            assert grad.abs().sum() > 0, name


def test_set_multiplier_zero_gives_the_base_model():
    model = make_model()
    batch = make_batch()
    base = model(*batch)
    network = create(model)
    randomize(network)
    network.apply_to([], model)
    assert not torch.allclose(model(*batch), base)
    network.set_multiplier(0.0)
    torch.testing.assert_close(model(*batch), base)


def test_param_groups_separate_llm_adapter_and_norms():
    network = create(make_model(), llm_adapter_lr="1e-5")
    groups, names = network.prepare_optimizer_params(None, 1e-3, 1e-4)
    assert names == ["unet", "llm_adapter", "norm"]
    lrs = {name: g["lr"] for name, g in zip(names, groups, strict=True)}
    assert lrs == {"unet": 1e-3, "llm_adapter": 1e-5, "norm": 1e-3}
    assert groups[2]["weight_decay"] == 0.0 and "weight_decay" not in groups[0]
    n_adapter = sum(
        p.numel()
        for a in network.adapters
        if a.kind == "lora" and a.path.startswith("llm_adapter.")
        for p in a.parameters()
    )
    assert sum(p.numel() for p in groups[1]["params"]) == n_adapter
    assert sum(len(g["params"]) for g in groups) == len(list(network.parameters()))
    groups, names = network.prepare_optimizer_params(None, None, 2e-4, llm_adapter_lr=3e-6, norm_lr=5e-6)
    assert [g["lr"] for g in groups] == [2e-4, 3e-6, 5e-6]
    torch.optim.AdamW(groups, weight_decay=0.01)  # the groups are valid optimizer input


def test_restored_alpha_changes_the_scale():
    network = create(make_model(), dim=4, alpha=1.0)
    state = network.state_dict()
    state = {k: (torch.tensor(8.0) if k.endswith("alpha") else v) for k, v in state.items()}
    network.load_state_dict(state)
    assert {a.scale for a in network.adapters if a.kind == "lora"} == {2.0}


def test_real_tiny_anima_targets_and_trains_under_checkpointing():
    from library.anima.llm_adapter import LLMAdapterConfig
    from library.anima.model import AnimaConfig, AnimaDiT

    torch.manual_seed(0)
    adapter = LLMAdapterConfig(source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_heads=2, vocab_size=64)
    config = AnimaConfig(
        model_channels=64, num_blocks=2, num_heads=2, adaln_lora_dim=16, crossattn_emb_channels=32, adapter=adapter
    )
    model = AnimaDiT(config)
    model.enable_gradient_checkpointing()
    network = create(model)
    assert len(linear_paths(network)) == 40 and len(norm_paths(network)) == 24
    randomize(network)
    network.apply_to([], model)
    context = model.llm_adapter(torch.randn(1, 5, 64), torch.randint(0, 64, (1, 4)))
    out = model(torch.randn(1, 16, 1, 8, 8), torch.rand(1), torch.cat([context, context.new_zeros(1, 8, 32)], 1))
    out.square().mean().backward()
    for adapter_module in network.adapters:
        grad = (adapter_module.lora_up.weight if adapter_module.kind == "lora" else adapter_module.w_norm).grad
        assert grad is not None and grad.abs().sum() > 0, adapter_module.path


def test_max_norm_regularization_bounds_every_linear_delta():
    network = create(make_model())
    randomize(network)
    norms = [float(a.delta_weight().detach().norm()) for a in network.adapters if a.kind == "lora"]
    limit = sorted(norms)[len(norms) // 2]
    scaled, mean, maximum = network.apply_max_norm_regularization(limit, "cpu")
    assert scaled == sum(n > limit for n in norms) > 0
    after = [float(a.delta_weight().detach().norm()) for a in network.adapters if a.kind == "lora"]
    assert max(after) == pytest.approx(limit) and maximum == pytest.approx(limit)
    assert mean == pytest.approx(sum(after) / len(after))
