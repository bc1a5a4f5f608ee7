"""Adapter files: round trips, ComfyUI's formula on what we save, foreign formats, load errors, metadata."""

from __future__ import annotations

import logging

import pytest
import torch
from _comfy import comfy_patch
from _fake_anima import make_batch, make_model, one_thread
from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_anima_lora_to_diffusers
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from library.errors import ConfigError
from networks import loha_anima, lokr_anima, lora_anima

VARIANTS = {  # name: (network module, dim, alpha, network_args)
    "lora": (lora_anima, 4, 2.0, {}),
    "lora_reg": (
        lora_anima,
        4,
        2.0,
        {"network_reg_dims": r"blocks\.0\..*=8,llm_adapter\..*=2", "network_reg_alphas": r".*mlp.*=5"},
    ),
    "lokr_split": (lokr_anima, 2, 1.0, {"factor": "4"}),
    "lokr_both": (lokr_anima, 1, 3.0, {"factor": "4", "decompose_both": "true"}),
    "lokr_full": (lokr_anima, 100000, 1.0, {}),
    "loha": (loha_anima, 2, 3.0, {}),
    "loha_reg": (loha_anima, 2, 1.0, {"network_reg_dims": r"blocks\.1\..*=3", "network_reg_alphas": r".*_proj=6"}),
}


_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def train(variant: str, steps: int = 3, model=None):
    module, dim, alpha, args = VARIANTS[variant]
    model = model or make_model()
    network = module.create_network(1.0, dim, alpha, None, [], model, **args)
    network.apply_to([], model)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.5)
    batch = make_batch()
    for step in range(steps):
        optimizer.zero_grad()
        (model(*batch) - make_batch(seed=10 + step)[0][..., :8]).square().mean().backward()
        optimizer.step()
    network.eval()
    return model, network


def fresh_output(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    model = make_model()
    model.load_state_dict(weights)
    with torch.no_grad():
        return model(*make_batch())


@pytest.mark.parametrize("variant", VARIANTS)
def test_saved_file_is_comfyui_form_and_reproduces_training(tmp_path, variant):
    model, network = train(variant)
    with torch.no_grad():
        trained = model(*make_batch())
    file = tmp_path / "a.safetensors"
    network.save_weights(file, torch.float32, {"ss_output_name": "a"})
    saved = load_file(file)
    assert all(key.startswith("diffusion_model.") for key in saved)
    assert all(saved[k].dim() == 0 for k in saved if k.endswith(".alpha"))
    covered = {key.removeprefix("diffusion_model.").rsplit(".", 2 if ".lora_" in key else 1)[0] for key in saved}
    assert covered == {a.path for a in network.adapters}
    base = make_model().state_dict()
    torch.testing.assert_close(fresh_output(comfy_patch(base, saved)), trained, rtol=0, atol=1e-5)
    assert not torch.allclose(fresh_output(base), trained, atol=1e-3)  # the training did something

    module, dim, alpha, args = VARIANTS[variant]
    fresh = make_model()
    reloaded = module.create_network(1.0, dim, 7.0, None, [], fresh, **args)  # CLI alpha differs: the file's wins
    reloaded.apply_to([], fresh)
    info = reloaded.load_weights(file)
    assert info["unmatched_keys"] == [] and info["not_in_file"] == []
    with torch.no_grad():
        torch.testing.assert_close(fresh(*make_batch()), trained, rtol=0, atol=1e-6)
    inferred_model = make_model()
    inferred, _sd = module.create_network_from_weights(1.0, str(file), None, [], inferred_model)
    inferred.apply_to([], inferred_model)
    with torch.no_grad():
        torch.testing.assert_close(inferred_model(*make_batch()), trained, rtol=0, atol=1e-6)
    assert {a.path: a.rank for a in inferred.adapters} == {a.path: a.rank for a in network.adapters}


def test_real_tiny_anima_round_trip_and_comfy_formula(tmp_path):
    from library.anima.llm_adapter import LLMAdapterConfig
    from library.anima.model import AnimaConfig, AnimaDiT

    adapter = LLMAdapterConfig(source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_heads=2, vocab_size=64)
    config = AnimaConfig(
        model_channels=64, num_blocks=2, num_heads=2, adaln_lora_dim=16, crossattn_emb_channels=32, adapter=adapter
    )
    torch.manual_seed(0)
    base = AnimaDiT(config).state_dict()
    gen = torch.Generator().manual_seed(1)
    inputs = (torch.randn(1, 64, 5, generator=gen), torch.randint(0, 64, (1, 4), generator=gen))
    x, t = torch.randn(1, 16, 1, 8, 8, generator=gen), torch.rand(1, generator=gen)

    def run(model):
        return model(x, t, model.llm_adapter(inputs[0].transpose(1, 2), inputs[1]))

    model = AnimaDiT(config)
    model.load_state_dict(base)
    network = lora_anima.create_network(1.0, 4, 2.0, None, [], model)
    network.apply_to([], model)
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    for _ in range(3):
        optimizer.zero_grad()
        run(model).square().mean().backward()
        optimizer.step()
    with torch.no_grad():
        trained = run(model)
    file = tmp_path / "tiny.safetensors"
    network.save_weights(file, None, {})
    patched = AnimaDiT(config)
    patched.load_state_dict(comfy_patch(base, load_file(file)))
    with torch.no_grad():
        torch.testing.assert_close(run(patched), trained, rtol=0, atol=1e-5)
        fresh = AnimaDiT(config)
        fresh.load_state_dict(base)
        loaded, _ = lora_anima.create_network_from_weights(1.0, str(file), None, [], fresh)
        loaded.apply_to([], fresh)
        torch.testing.assert_close(run(fresh), trained, rtol=0, atol=1e-6)
        untouched = AnimaDiT(config)
        untouched.load_state_dict(base)
        assert not torch.allclose(run(untouched), trained, atol=1e-4)


def test_save_precision_and_metadata(tmp_path):
    _model, network = train("lora", steps=1)
    file = tmp_path / "b.safetensors"
    network.save_weights(file, torch.bfloat16, {"ss_output_name": "b", "ss_network_dim": "from-trainer"})
    saved = load_file(file)
    assert {t.dtype for t in saved.values()} == {torch.bfloat16}
    with safe_open(file, "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_module"] == "networks.lora_anima"
    assert metadata["ss_network_dim"] == "from-trainer" and metadata["ss_network_alpha"] == "2.0"
    assert metadata["ss_output_name"] == "b" and "ss_network_args" not in metadata
    _model, lokr = train("lokr_full", steps=1)
    lokr.save_weights(tmp_path / "c.safetensors", None, None)
    with safe_open(tmp_path / "c.safetensors", "pt") as handle:
        metadata = handle.metadata()
    assert metadata["ss_network_dim"] == "100000" and metadata["ss_network_module"] == "networks.lokr_anima"
    lokr.save_weights(tmp_path / "c.pt", None, None)
    assert lokr.load_weights(tmp_path / "c.pt")["loaded"] == len(lokr.adapters)
    assert not list(tmp_path.glob(".tmp-*"))


def _rename(saved: dict, name, suffixes: dict | None = None, drop_alpha: bool = False) -> dict:
    """Rewrite our `diffusion_model.<path>.<suffix>` keys with name(path) and suffix spellings."""
    out = {}
    for key, tensor in saved.items():
        for suffix in (
            "lora_down.weight",
            "lora_up.weight",
            "alpha",
            "w_norm",
            "lokr_w1",
            "lokr_w1_a",
            "lokr_w1_b",
            "lokr_w2",
            "lokr_w2_a",
            "lokr_w2_b",
        ):
            if key.endswith("." + suffix):
                path = key.removeprefix("diffusion_model.")[: -len(suffix) - 1]
                break
        if drop_alpha and suffix == "alpha":
            continue
        out[f"{name(path)}.{(suffixes or {}).get(suffix, suffix)}"] = tensor
    return out


PEFT = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}


def _no_alpha(saved: dict) -> dict:
    """The file as a trainer that trains at scale 1 writes it: alpha folded into lora_up, no alpha key."""
    out = dict(saved)
    for key in [k for k in saved if k.endswith(".alpha")]:
        up = key.removesuffix("alpha") + "lora_up.weight"
        out[up] = saved[up] * (float(saved[key]) / saved[up].shape[1])
        del out[key]
    return out


def _fixtures(lora: dict, lokr: dict, whole: dict) -> dict:
    """Hand-made files in every foreign form (adapter-files.md §6): name -> (file, ComfyUI-form equivalent)."""
    flat = lambda prefix: lambda path: prefix + path.replace(".", "_")  # noqa: E731
    plain = _no_alpha(lora)
    toolkit = {k: (torch.tensor(1.0) if k.endswith(".alpha") else v) for k, v in whole.items()}
    adaln = {
        f"diffusion_model.blocks.0.adaln_modulation_mlp.1.lora_{ab}.weight": torch.randn(shape) * 0.1
        for ab, shape in (("A", (2, 32)), ("B", (8, 2)))
    }
    comfy_adaln = {k.replace("lora_A", "lora_down").replace("lora_B", "lora_up"): v for k, v in adaln.items()}
    norms = {k: v for k, v in lora.items() if k.endswith(".w_norm")}
    return {
        "kohya lora_unet_": (_rename(lora, flat("lora_unet_")), lora),
        "peft diffusion_model.": (_rename(lora, lambda p: "diffusion_model." + p, PEFT), lora),
        "diffusers transformer.": (
            _convert_non_diffusers_anima_lora_to_diffusers(_rename(lora, lambda p: "diffusion_model." + p, PEFT)),
            lora,
        ),
        "DiffSynth bare .default": (
            _rename(plain, lambda p: p, {k: v.replace(".weight", ".default.weight") for k, v in PEFT.items()}),
            plain,
        ),
        "diffusion-pipe no alpha + adaln": (
            {**_rename(plain, lambda p: "diffusion_model." + p, PEFT), **adaln},
            {**plain, **comfy_adaln},
        ),
        "ComfyUI trainer .diff": (_rename(lora, lambda p: "diffusion_model." + p, {"w_norm": "diff"}), lora),
        "LyCORIS lycoris_ LoKr": (_rename(lokr, flat("lycoris_")), lokr),
        "LyCORIS lora_unet_ LoKr": (_rename(lokr, flat("lora_unet_")), lokr),
        "FHfanshu diffusion_model. LoKr + w_norm": (lokr, lokr),
        "AnimaLoraToolkit whole LoKr": (_rename(toolkit, flat("lora_unet_")), toolkit),
        "FHfanshu bare norms": (_rename(norms, lambda p: p), norms),
    }


def test_foreign_formats_load_with_every_key_matched(caplog):
    lora = {k: v for k, v in train("lora", steps=2)[1].file_state_dict().items()}
    lokr = dict(train("lokr_split", steps=2)[1].file_state_dict())
    whole = {k: v for k, v in train("lokr_full", steps=2)[1].file_state_dict().items() if "norm" not in k}
    base = make_model().state_dict()
    for name, (fixture, comfy_form) in _fixtures(lora, lokr, whole).items():
        module = lokr_anima if any("lokr" in k for k in fixture) else lora_anima
        model = make_model()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            network, _ = module.create_network_from_weights(1.0, None, None, [], model, weights_sd=fixture)
        assert not caplog.records, name
        modules = {k.rsplit(".", 2 if ".lora_" in k else 1)[0].removeprefix("diffusion_model.") for k in comfy_form}
        assert {a.path for a in network.adapters} == modules, name
        network.apply_to([], model)
        with torch.no_grad():
            torch.testing.assert_close(
                model(*make_batch()), fresh_output(comfy_patch(base, comfy_form)), rtol=0, atol=1e-5, msg=name
            )


def test_unmatched_keys_are_reported_by_name(tmp_path, caplog):
    _model, network = train("lora", steps=1)
    file = tmp_path / "d.safetensors"
    extra = {
        "lora_te_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(4, 8),
        "diffusion_model.nowhere.lora_up.weight": torch.zeros(2, 4),
    }
    save_file({**network.file_state_dict(), **extra}, str(file))
    target = lora_anima.create_network(1.0, 4, 2.0, None, [], make_model(), train_norm="false")
    with caplog.at_level(logging.WARNING):
        info = target.load_weights(file)
    assert set(extra) <= set(info["unmatched_keys"])
    assert any(k.endswith("w_norm") for k in info["unmatched_keys"])  # this network trains no norms
    assert all(name in caplog.text for name in extra)
    save_file(extra, str(file))
    with pytest.raises(ConfigError, match="lora_te_layers_0_self_attn_q_proj"):
        target.load_weights(file)


def test_shape_mismatch_and_wrong_kind_are_config_errors(tmp_path):
    _model, network = train("lora", steps=1)
    file = tmp_path / "e.safetensors"
    network.save_weights(file, None, {})
    smaller = lora_anima.create_network(1.0, 2, 2.0, None, [], make_model())
    with pytest.raises(ConfigError, match=r"lora_down\.weight: shape \(4, \d+\) in the file.*\(2, \d+\)"):
        smaller.load_weights(file)
    with pytest.raises(ConfigError, match="networks.lora_anima"):
        lokr_anima.create_network_from_weights(1.0, str(file), None, [], make_model())
    lokr_net = lokr_anima.create_network(1.0, 4, 1.0, None, [], make_model())
    with pytest.raises(ConfigError, match="a LoRA weight; load this file with --network_module networks.lora_anima"):
        lokr_net.load_weights(file)


def test_merge_to_equals_the_patched_forward():
    model, network = train("lokr_split", steps=2)
    with torch.no_grad():
        patched = model(*make_batch())
    merged_model = make_model()
    merged = lokr_anima.create_network_from_weights(
        1.0, None, None, [], merged_model, weights_sd=network.file_state_dict()
    )[0]
    assert merged.is_mergeable()
    merged.merge_to([], merged_model, None)
    with torch.no_grad():
        torch.testing.assert_close(merged_model(*make_batch()), patched, rtol=0, atol=1e-5)
