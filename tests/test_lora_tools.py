"""tools/convert_anima_lora.py and merge_anima_lora.py: exact conversion of every foreign form into our ComfyUI
form, refusals that name the problem, and merges equal to the patched forward in the input's layout (resizing:
tests/test_lora_resize.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from _comfy import comfy_patch
from _fake_anima import make_model, one_thread
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_network_files import _fixtures, train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import convert_anima_lora as convert  # noqa: E402
import merge_anima_lora as merge  # noqa: E402
from _lora_math import comfy_delta  # noqa: E402
from _lora_read import read_adapter  # noqa: E402

from library.anima.llm_adapter import LLMAdapterConfig  # noqa: E402
from library.anima.loading import load_anima_dit, save_anima_dit  # noqa: E402
from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402
from library.errors import ConfigError  # noqa: E402
from networks import lokr_anima, lora_anima  # noqa: E402

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

TINY = AnimaConfig(
    model_channels=64,
    num_blocks=2,
    num_heads=2,
    adaln_lora_dim=16,
    crossattn_emb_channels=32,
    adapter=LLMAdapterConfig(source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_heads=2, vocab_size=64),
)


def tiny_base() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return AnimaDiT(TINY).state_dict()


def tiny_model(state: dict[str, torch.Tensor] | None = None) -> AnimaDiT:
    model = AnimaDiT(TINY)
    model.load_state_dict(state if state is not None else tiny_base())
    return model.eval()


def run(model: AnimaDiT) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    source, ids = torch.randn(1, 5, 64, generator=gen), torch.randint(0, 64, (1, 4), generator=gen)
    x, t = torch.randn(1, 16, 1, 8, 8, generator=gen), torch.rand(1, generator=gen)
    with torch.no_grad():
        return model(x, t, model.llm_adapter(source, ids))


def random_network(module, model: torch.nn.Module, dim: int, alpha: float, seed: int, **args):
    """A network with every tensor random (LoRA up is zero at init, which would hide scale bugs)."""
    network = module.create_network(1.0, dim, alpha, None, [], model, **args)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in network.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return network


def test_convert_reads_every_foreign_form_exactly():
    lora = train("lora", steps=2)[1].file_state_dict()
    lokr = train("lokr_split", steps=2)[1].file_state_dict()
    whole = {k: v for k, v in train("lokr_full", steps=2)[1].file_state_dict().items() if "norm" not in k}
    base = make_model().state_dict()
    for name, (fixture, comfy_form) in _fixtures(lora, lokr, whole).items():
        converted, patches = convert.convert_weights(fixture, make_model(), name)
        assert all(key.startswith("diffusion_model.") for key in converted), name
        assert all(f"diffusion_model.{p.path}.alpha" in converted for p in patches if p.kind != "norm"), name
        if "no alpha" in name or "DiffSynth" in name:
            assert any(p.alpha_added for p in patches), name
        expected, got = comfy_patch(base, comfy_form), comfy_patch(base, converted)  # asserts ComfyUI maps each key
        for key in base:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=f"{name}: {key}")
        module = lokr_anima if any(p.kind == "lokr" for p in patches) else lora_anima
        network, _ = module.create_network_from_weights(1.0, None, None, [], make_model(), weights_sd=converted)
        assert {a.path for a in network.adapters} == {p.path for p in patches}, name


def test_convert_cli_on_the_real_module_tree_keeps_scale_and_metadata(tmp_path, capsys):
    """No --model: names resolve against the default 2B skeleton (meta device); alpha stays exact float32."""
    gen = torch.Generator().manual_seed(3)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    source = {
        "lora_unet_blocks_27_mlp_layer1.lora_down.weight": rnd(2, 2048),
        "lora_unet_blocks_27_mlp_layer1.lora_up.weight": rnd(8192, 2),
        "lora_unet_blocks_27_mlp_layer1.alpha": torch.tensor(0.3),
        "lycoris_llm_adapter_blocks_5_self_attn_o_proj.lokr_w1": rnd(8, 8),
        "lycoris_llm_adapter_blocks_5_self_attn_o_proj.lokr_w2_a": rnd(128, 2),
        "lycoris_llm_adapter_blocks_5_self_attn_o_proj.lokr_w2_b": rnd(2, 128),
        "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": rnd(3, 2048),
        "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight": rnd(2048, 3),
        "diffusion_model.t_embedding_norm.diff": rnd(2048),
    }
    metadata = {"ss_network_module": "lycoris.kohya", "modelspec.title": "mine", "ss_output_name": "x"}
    file, out = tmp_path / "in.safetensors", tmp_path / "out.safetensors"
    save_file(source, str(file), metadata)
    assert convert.main([str(file), "--output", str(out), "--dtype", "bf16"]) == 0
    assert "2 missing alphas set to the rank" in capsys.readouterr().out
    saved = load_file(out)
    q = "diffusion_model.blocks.0.self_attn.q_proj."
    o = "diffusion_model.llm_adapter.blocks.5.self_attn.o_proj."
    assert float(saved["diffusion_model.blocks.27.mlp.layer1.alpha"]) == torch.tensor(0.3).item()
    assert float(saved[q + "alpha"]) == 3.0 and float(saved[o + "alpha"]) == 2.0  # ComfyUI's scale 1 kept
    assert {t.dtype for k, t in saved.items() if k.endswith("alpha")} == {torch.float32}
    assert {t.dtype for k, t in saved.items() if not k.endswith("alpha")} == {torch.bfloat16}
    assert torch.equal(
        saved[q + "lora_up.weight"],
        source[key := "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight"].bfloat16(),
    ), key
    assert torch.equal(
        saved["diffusion_model.t_embedding_norm.w_norm"], source["diffusion_model.t_embedding_norm.diff"].bfloat16()
    )
    assert set(saved) == {
        *(f"diffusion_model.blocks.27.mlp.layer1.{s}" for s in ("lora_down.weight", "lora_up.weight", "alpha")),
        *(o + s for s in ("lokr_w1", "lokr_w2_a", "lokr_w2_b", "alpha")),
        *(q + s for s in ("lora_down.weight", "lora_up.weight", "alpha")),
        "diffusion_model.t_embedding_norm.w_norm",
    }
    with safe_open(str(out), "pt") as handle:
        kept = handle.metadata()
    assert kept["modelspec.title"] == "mine" and kept["ss_output_name"] == "x"
    assert kept["ss_network_module"] == "networks.lokr_anima" and "lycoris.kohya" in kept[convert.NOTE_KEY]


REFUSALS = {  # name: (keys -> shapes, message fragment)
    "text encoder": ({"lora_te_layers_0_self_attn_q_proj.lora_down.weight": (2, 8)}, "DiT-only"),
    "DoRA": (
        {
            "lora_unet_blocks_0_self_attn_q_proj.lora_down.weight": (2, 32),
            "lora_unet_blocks_0_self_attn_q_proj.lora_up.weight": (32, 2),
            "lora_unet_blocks_0_self_attn_q_proj.dora_scale": (32, 1),
        },
        "DoRA",
    ),
    "Tucker LoHa": ({"lora_unet_blocks_0_mlp_layer1.hada_t1": (2, 2, 3, 3)}, "Tucker LoHa"),
    "half a LoHa": ({"lora_unet_blocks_0_mlp_layer1.hada_w1_a": (64, 2)}, "needs all of"),
    "unknown": ({"diffusion_model.blocks.0.nowhere.lora_up.weight": (32, 2)}, "unknown keys"),
    "full diff on a Linear": ({"diffusion_model.blocks.0.self_attn.q_proj.diff": (32, 32)}, "full-weight diff"),
    "bias delta": ({"diffusion_model.llm_adapter.norm.b_norm": (16,)}, "bias delta"),
    "wrong shape": (
        {
            "diffusion_model.blocks.0.self_attn.q_proj.lora_down.weight": (2, 31),
            "diffusion_model.blocks.0.self_attn.q_proj.lora_up.weight": (32, 2),
        },
        "do not fit",
    ),
    "half a LoRA": ({"diffusion_model.blocks.0.self_attn.q_proj.lora_up.weight": (32, 2)}, "needs both"),
    "twice": (
        {"lora_unet_t_embedding_norm.w_norm": (32,), "diffusion_model.t_embedding_norm.w_norm": (32,)},
        "both address",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_convert_refuses_what_it_cannot_rewrite_exactly(case):
    shapes, message = REFUSALS[case]
    with pytest.raises(ConfigError, match=message):
        convert.convert_weights({k: torch.zeros(s) for k, s in shapes.items()}, make_model(), "f.safetensors")


def test_convert_cli_refusal_exits_2_and_writes_nothing(tmp_path, capsys):
    file, out = tmp_path / "te.safetensors", tmp_path / "out.safetensors"
    save_file({"lora_te_layers_0_mlp_up_proj.lora_down.weight": torch.zeros(2, 8)}, str(file))
    assert convert.main([str(file), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "DiT-only" in err and "lora_te_layers_0_mlp_up_proj" in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def _tiny_files(tmp_path: Path, prefix: str = "net.", dtype: torch.dtype | None = None):
    dit, lora_file, lokr_file = (tmp_path / n for n in ("dit.safetensors", "a.safetensors", "b.safetensors"))
    save_anima_dit(tiny_base(), dit, prefix=prefix, dtype=dtype)
    lora = random_network(lora_anima, tiny_model(), 4, 2.0, seed=5)  # norms included by default
    lora.save_weights(lora_file, None, {})
    lokr = random_network(lokr_anima, tiny_model(), 2, 3.0, seed=6, factor="4")
    lokr.save_weights(lokr_file, None, {})
    return dit, lora_file, lokr_file


def test_merge_equals_the_patched_forward_and_comfyui(tmp_path):
    dit, lora_file, lokr_file = _tiny_files(tmp_path)
    out = tmp_path / "merged.safetensors"
    model = tiny_model()
    network, _ = lora_anima.create_network_from_weights(1.0, str(lora_file), None, [], model)
    network.apply_to([], model)
    for ratio in (1.0, 0.5):
        network.set_multiplier(ratio)
        assert (
            merge.main(["--model", str(dit), "--lora", str(lora_file), "--ratio", str(ratio), "--output", str(out)])
            == 0
        )
        torch.testing.assert_close(run(load_anima_dit(out)), run(model), rtol=0, atol=1e-5)
    assert not torch.allclose(run(tiny_model()), run(model), atol=1e-3)  # the adapter does something

    # a whole-matrix LoKr with a foreign alpha (AnimaLoraToolkit): ComfyUI applies scale 1, and so must we
    whole = random_network(lokr_anima, tiny_model(), 100000, 1.0, seed=9, factor="4", train_norm="false")
    whole_file = tmp_path / "whole.safetensors"
    save_file(
        {k: torch.tensor(0.25) if k.endswith("alpha") else v for k, v in whole.file_state_dict().items()},
        str(whole_file),
    )
    files, ratios = [lora_file, lokr_file, whole_file], [1.0, 0.5, 0.7]
    assert merge.merge_file(dit, [str(f) for f in files], ratios, out) > 0
    expected = tiny_base()
    for file, ratio in zip(files, ratios, strict=True):
        expected = comfy_patch(expected, load_file(file), ratio)
    merged = load_file(out)
    assert list(merged) == list(load_file(dit))
    for key, value in expected.items():
        torch.testing.assert_close(merged["net." + key], value, rtol=0, atol=1e-6, msg=key)
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "pt" and "b.safetensors" in metadata[merge.NOTE_KEY]


@pytest.mark.parametrize(
    "prefix,stored,asked,written",
    [
        ("model.diffusion_model.", torch.bfloat16, None, torch.bfloat16),
        ("", torch.float32, "bf16", torch.bfloat16),
        ("net.", torch.bfloat16, "float", torch.float32),
    ],
)
def test_merge_keeps_the_input_layout_and_dtype(tmp_path, prefix, stored, asked, written):
    dit, lora_file, _ = _tiny_files(tmp_path, prefix, stored)
    out = tmp_path / "merged.safetensors"
    merge.merge_file(
        dit,
        [str(lora_file)],
        None,
        out,
        None if asked is None else {"bf16": torch.bfloat16, "float": torch.float32}[asked],
    )
    source, merged = load_file(dit), load_file(out)
    assert list(merged) == list(source) and all(k.startswith(prefix) for k in merged)
    assert {t.dtype for t in merged.values()} == {written}
    weights = load_file(lora_file)
    path = "blocks.1.mlp.layer2"
    patch = next(p for p in read_adapter(weights, AnimaDiT(TINY), "a") if p.path == path)
    exact = source[f"{prefix}{path}.weight"].float() + comfy_delta(patch)
    assert torch.equal(merged[f"{prefix}{path}.weight"], exact.to(written))  # one rounding, from float32


def test_merge_refuses_fp8_and_bad_ratios(tmp_path, capsys):
    dit, lora_file, _ = _tiny_files(tmp_path)
    state = load_file(dit)
    state["net.blocks.0.mlp.layer1.weight"] = state["net.blocks.0.mlp.layer1.weight"].to(torch.float8_e4m3fn)
    fp8, out = tmp_path / "fp8.safetensors", tmp_path / "out.safetensors"
    save_file(state, str(fp8))
    assert merge.main(["--model", str(fp8), "--lora", str(lora_file), "--output", str(out)]) == 2
    assert "fp8" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ConfigError, match="--ratio has 2 values for 1"):
        merge.merge_file(dit, [str(lora_file)], [1.0, 0.5], out)
    with pytest.raises(ConfigError, match="is the --model file"):
        merge.merge_file(dit, [str(lora_file)], None, dit)
