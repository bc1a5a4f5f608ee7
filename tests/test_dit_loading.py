"""DiT files: prefixes, dtypes, variants read from shapes, wrong-file errors before any weight is read, saving."""

from __future__ import annotations

import pytest
import torch
from _fixtures import comfy_fixture
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from library.anima import loading
from library.anima.dit_header import inspect_dit_file
from library.anima.llm_adapter import LLMAdapterConfig
from library.anima.loading import load_anima_dit, save_anima_dit
from library.anima.model import AnimaConfig, AnimaDiT
from library.errors import ModelFileError

ADAPTER = LLMAdapterConfig(source_dim=64, target_dim=32, model_dim=32, num_layers=2, num_heads=2, vocab_size=1000)
TINY = AnimaConfig(
    model_channels=64, num_blocks=2, num_heads=2, adaln_lora_dim=16, crossattn_emb_channels=32, adapter=ADAPTER
)


def tiny_state_dict(config: AnimaConfig = TINY, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: torch.randn(v.shape) for k, v in AnimaDiT(config).state_dict().items()}


@pytest.fixture
def no_weight_reads(monkeypatch):
    """Errors must come from the header: opening the file for tensors fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("weights were read before the file was checked")

    monkeypatch.setattr(loading, "safe_open", refuse)


@pytest.mark.parametrize("prefix", ["net.", "model.diffusion_model.", ""])
@pytest.mark.parametrize(("dtype", "name"), [(torch.bfloat16, "BF16"), (torch.float16, "F16"), (torch.float32, "F32")])
def test_each_prefix_and_dtype_loads(tmp_path, prefix, dtype, name):
    sd = tiny_state_dict()
    path = tmp_path / "dit.safetensors"
    save_anima_dit(sd, path, prefix=prefix, dtype=dtype)
    with safe_open(str(path), "pt") as handle:
        assert all(key.startswith(prefix) for key in handle.keys())  # noqa: SIM118
    info = inspect_dit_file(path)
    assert (info.prefix, info.dtype, info.has_adapter, info.fp8_scaled) == (prefix, name, True, False)
    assert (info.config, info.num_blocks, info.num_tensors) == (TINY, 2, len(sd))
    model = load_anima_dit(path, dtype=torch.float32)
    loaded = model.state_dict()
    assert loaded.keys() == sd.keys()
    for name, value in sd.items():
        assert loaded[name].dtype == torch.float32
        assert torch.equal(loaded[name], value.to(dtype).float()), name
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "config",
    [
        AnimaConfig(
            model_channels=96,
            num_blocks=3,
            num_heads=3,
            mlp_ratio=2.0,
            adaln_lora_dim=8,
            crossattn_emb_channels=48,
            adapter=LLMAdapterConfig(48, 48, 48, num_layers=1, num_heads=3, mlp_ratio=2.0, vocab_size=50),
        ),
        AnimaConfig(
            model_channels=32,
            num_blocks=1,
            num_heads=1,
            adaln_lora_dim=4,
            crossattn_emb_channels=16,
            adapter=LLMAdapterConfig(24, 16, 32, num_layers=3, num_heads=2, vocab_size=40),
        ),
    ],
    ids=["3-block", "1-block"],
)
def test_variants_are_read_from_shapes(tmp_path, config):
    path = tmp_path / "variant.safetensors"
    save_anima_dit(tiny_state_dict(config), path)
    assert inspect_dit_file(path).config == config
    model = load_anima_dit(path)
    context = model.llm_adapter(torch.randn(1, 4, config.adapter.source_dim), torch.tensor([[3, 1]]))
    out = model(torch.randn(1, 16, 1, 4, 6), torch.tensor([0.5]), context)
    assert out.shape == (1, 16, 1, 4, 6) and torch.isfinite(out).all()


def spec_2b_shapes() -> dict[str, tuple[int, ...]]:
    """The real file's keys and shapes, written out from anima-model.md §2.3-2.5 (not from our model)."""
    shapes: dict[str, tuple[int, ...]] = {
        "x_embedder.proj.1.weight": (2048, 68),
        "t_embedder.1.linear_1.weight": (2048, 2048),
        "t_embedder.1.linear_2.weight": (6144, 2048),
        "t_embedding_norm.weight": (2048,),
        "final_layer.linear.weight": (64, 2048),
        "final_layer.adaln_modulation.1.weight": (256, 2048),
        "final_layer.adaln_modulation.2.weight": (4096, 256),
        "llm_adapter.embed.weight": (32128, 1024),
        "llm_adapter.out_proj.weight": (1024, 1024),
        "llm_adapter.out_proj.bias": (1024,),
        "llm_adapter.norm.weight": (1024,),
    }
    for i in range(28):
        b = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            context = 2048 if attn == "self_attn" else 1024
            shapes |= {b + f"{attn}.q_proj.weight": (2048, 2048), b + f"{attn}.output_proj.weight": (2048, 2048)}
            shapes |= {b + f"{attn}.k_proj.weight": (2048, context), b + f"{attn}.v_proj.weight": (2048, context)}
            shapes |= {b + f"{attn}.q_norm.weight": (128,), b + f"{attn}.k_norm.weight": (128,)}
        shapes |= {b + "mlp.layer1.weight": (8192, 2048), b + "mlp.layer2.weight": (2048, 8192)}
        for part in ("self_attn", "cross_attn", "mlp"):
            shapes |= {b + f"adaln_modulation_{part}.1.weight": (256, 2048)}
            shapes |= {b + f"adaln_modulation_{part}.2.weight": (6144, 256)}
    for i in range(6):
        b = f"llm_adapter.blocks.{i}."
        shapes |= {b + f"norm_{part}.weight": (1024,) for part in ("self_attn", "cross_attn", "mlp")}
        shapes |= {b + f"{attn}.{p}_proj.weight": (1024, 1024) for attn in ("self_attn", "cross_attn") for p in "qkvo"}
        shapes |= {b + f"{attn}.{n}_norm.weight": (64,) for attn in ("self_attn", "cross_attn") for n in "qk"}
        shapes |= {b + "mlp.0.weight": (4096, 1024), b + "mlp.0.bias": (4096,)}
        shapes |= {b + "mlp.2.weight": (1024, 4096), b + "mlp.2.bias": (1024,)}
    return shapes


def test_real_2b_config_from_header_shapes():
    shapes = spec_2b_shapes()
    config = AnimaConfig.from_state_dict(shapes)
    assert config == AnimaConfig()
    assert (config.num_blocks, config.num_heads, config.adapter.num_heads) == (28, 16, 16)
    with torch.device("meta"):
        model = AnimaDiT(config)
    ours = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    assert ours == shapes
    assert len(ours) == 685
    assert sum(p.numel() for p in model.parameters()) == 2_091_068_928


@pytest.mark.parametrize(("width", "blocks", "heads"), [(2048, 20, 16), (5120, 36, 40)])
def test_block_count_and_heads_come_from_the_file(width, blocks, heads):
    with torch.device("meta"):
        config = AnimaConfig(model_channels=width, num_blocks=blocks, num_heads=heads)
        shapes = {name: p.shape for name, p in AnimaDiT(config).state_dict().items()}
    assert AnimaConfig.from_state_dict(shapes) == config


def test_round_trip_writes_no_buffers(tmp_path):
    model = AnimaDiT(TINY)
    kohya_style = dict(model.state_dict()) | {"pos_embedder.seq": torch.arange(256.0)}
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_anima_dit(model, first)
    save_anima_dit(kohya_style, second, dtype=torch.float32)
    for path in (first, second):
        with safe_open(str(path), "pt") as handle:
            keys = list(handle.keys())
            assert handle.metadata() == {"format": "pt"}
        assert len(keys) == len(model.state_dict()) and all(k.startswith("net.") for k in keys)
        assert not any("pos_embedder" in k for k in keys)
        reloaded = load_anima_dit(path).state_dict()
        assert all(torch.equal(reloaded[k], v) for k, v in model.state_dict().items())


def test_kohya_rope_buffers_in_a_file_are_ignored(tmp_path):
    sd = {"net." + k: v for k, v in tiny_state_dict().items()}
    sd["net.pos_embedder.seq"] = torch.arange(256.0)
    sd["net.pos_embedder.dim_spatial_range"] = torch.arange(21.0)
    path = tmp_path / "kohya.safetensors"
    save_file(sd, str(path))
    assert list(load_anima_dit(path).buffers()) == []


def expect_error(path, *found: str) -> None:
    """Both the start-up check and the loader refuse the file, naming it and what was found."""
    for check in (inspect_dit_file, load_anima_dit):
        with pytest.raises(ModelFileError) as info:
            check(path)
        message = str(info.value)
        assert str(path) in message
        for text in found:
            assert text in message


def test_fp8_scaled_file_is_refused(tmp_path, no_weight_reads):
    sd = {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in tiny_state_dict().items()}
    sd |= {k.replace(".weight", ".scale_weight"): torch.ones(()) for k, v in sd.items() if v.ndim == 2}
    path = tmp_path / "anima_fp8_scaled.safetensors"
    # ComfyUI's fp8-scaled saves also carry a bare, unprefixed `scaled_fp8` marker tensor
    save_file({"model.diffusion_model." + k: v for k, v in sd.items()} | {"scaled_fp8": torch.zeros(2)}, str(path))
    assert inspect_dit_file(path, strict=False).fp8_scaled
    expect_error(path, "fp8-scaled", "bf16")


def test_plain_float8_weights_are_refused(tmp_path, no_weight_reads):
    sd = {k: v.to(torch.float8_e5m2) for k, v in tiny_state_dict().items()}
    path = tmp_path / "fp8.safetensors"
    save_file(sd, str(path))
    expect_error(path, "fp8")


def test_dit_without_llm_adapter_is_a_named_error(tmp_path, no_weight_reads):
    sd = {k: v for k, v in tiny_state_dict().items() if not k.startswith("llm_adapter.")}
    path = tmp_path / "cosmos.safetensors"
    save_anima_dit(sd, path)
    assert not inspect_dit_file(path, strict=False).has_adapter
    expect_error(path, "without llm_adapter")


WRONG_FILES = {
    "vae": ({"decoder.middle.0.residual.0.gamma": (4, 1, 1, 1), "encoder.conv1.weight": (4, 3, 3, 3, 3)}, "a VAE"),
    "qwen3": ({"model.embed_tokens.weight": (10, 8), "model.layers.0.self_attn.q_proj.weight": (8, 8)}, "Qwen3"),
    "lora": ({"lora_unet_blocks_0_self_attn_q_proj.lora_down.weight": (4, 64)}, "LoRA"),
    "lokr": ({"diffusion_model.blocks.0.mlp.layer1.lokr_w1": (4, 4)}, "LoRA/LoKr"),
    "diffusers": ({"transformer_blocks.0.attn1.to_q.weight": (8, 8)}, "diffusers-format"),
    "other": ({"conv_in.weight": (8, 4)}, "no x_embedder.proj.1.weight"),
}


@pytest.mark.parametrize("kind", list(WRONG_FILES))
def test_wrong_kind_of_file_names_what_was_found(tmp_path, no_weight_reads, kind):
    shapes, found = WRONG_FILES[kind]
    path = tmp_path / f"{kind}.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in shapes.items()}, str(path))
    expect_error(path, found)


def test_unknown_missing_and_misshapen_keys(tmp_path, no_weight_reads):
    sd = {"net." + k: v for k, v in tiny_state_dict().items()}
    cases = {
        "unknown": sd | {"net.extra_head.weight": torch.zeros(2), "other.weight": torch.zeros(2)},
        "missing": {k: v for k, v in sd.items() if "blocks.1.mlp.layer2" not in k},
        "shape": sd | {"net.blocks.1.self_attn.v_proj.weight": torch.zeros(64, 63)},
    }
    save_file(cases["unknown"], str(tmp_path / "unknown.safetensors"))
    expect_error(tmp_path / "unknown.safetensors", "2 unknown keys", "net.extra_head.weight")
    save_file(cases["missing"], str(tmp_path / "missing.safetensors"))
    expect_error(tmp_path / "missing.safetensors", "missing keys", "net.blocks.1.mlp.layer2.weight")
    save_file(cases["shape"], str(tmp_path / "shape.safetensors"))
    expect_error(tmp_path / "shape.safetensors", "unexpected shape", "net.blocks.1.self_attn.v_proj.weight [64, 63]")


def test_missing_unreadable_and_truncated_files(tmp_path, no_weight_reads):
    expect_error(tmp_path / "nope.safetensors", "no such file")
    pickle = tmp_path / "model.ckpt"
    torch.save({"a": torch.zeros(3)}, pickle)
    expect_error(pickle, "not safetensors")
    good = tmp_path / "good.safetensors"
    save_anima_dit(tiny_state_dict(), good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    expect_error(truncated, "truncated")


@torch.no_grad()
def test_comfyui_fixture_dit_loads_and_its_adapter_reproduces_comfyui():
    """A tiny DiT file ComfyUI itself loaded; our adapter's rows x T5 weights must equal ComfyUI's context."""
    path = comfy_fixture("tiny_dit.safetensors")
    info = inspect_dit_file(path)
    assert (info.prefix, info.config.model_channels, info.num_blocks, info.config.num_heads) == ("net.", 32, 1, 2)
    assert (info.config.adaln_lora_dim, info.config.adapter.source_dim, info.config.adapter.num_layers) == (8, 16, 2)
    adapter = load_anima_dit(path).llm_adapter
    golden = load_file(str(comfy_fixture("golden.safetensors")))
    for key in ("c00", "c01", "c03", "c08"):  # empty, short, 700 rows (no padding), weighted
        ids, weights = golden[f"{key}.t5_ids"], golden[f"{key}.t5_weights"]
        rows = adapter(golden[f"{key}.qwen_hidden"][None], ids[None])[0] * weights[:, None]
        expected = golden[f"{key}.context"]
        assert (rows - expected[: len(ids)]).abs().max() <= 1e-5, key
        assert not expected[len(ids) :].any()
