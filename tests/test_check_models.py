"""tools/check_anima_models.py and library/anima/detect.py: each kind and layout is named, bad ones fail."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import check_anima_models  # noqa: E402
import make_tiny_anima  # noqa: E402
from _random_weights import dit_shapes, qwen3_shapes, vae_shapes  # noqa: E402

from library.anima.detect import cross_check, identify  # noqa: E402
from library.anima.loading import save_anima_dit  # noqa: E402

ASSETS = ROOT / "library/anima/assets"
SIZE = make_tiny_anima.tiny()


def zeros(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return {name: torch.zeros(shape, dtype=dtype) for name, shape in shapes.items()}


def write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def dit_state() -> dict[str, torch.Tensor]:
    return {k.removeprefix("net."): v for k, v in zeros(dit_shapes(SIZE.dit)).items()}


def test_dit_layouts(tmp_path: Path, dit_state: dict[str, torch.Tensor]) -> None:
    official = tmp_path / "anima.safetensors"
    save_anima_dit(dit_state, official)
    found = identify(official)
    assert (found.kind, found.loads) == ("dit", True)
    assert "with llm_adapter" in found.summary and "width 64, 2 blocks" in found.summary and "'net.'" in found.summary
    comfy = tmp_path / "comfy.safetensors"
    save_anima_dit(dit_state, comfy, prefix="model.diffusion_model.", dtype=torch.bfloat16)
    found = identify(comfy)
    assert found.loads and "'model.diffusion_model.'" in found.summary and "BF16" in found.summary
    trunk = write(
        tmp_path / "cosmos.safetensors",
        {"net." + k: v for k, v in dit_state.items() if not k.startswith("llm_adapter.")},
    )
    found = identify(trunk)
    assert not found.loads and "WITHOUT llm_adapter" in found.summary and "llm_adapter" in found.fix


def test_fp8_scaled_dit_is_reported_and_refused(tmp_path: Path, dit_state: dict[str, torch.Tensor]) -> None:
    tensors = {"net." + k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in dit_state.items()}
    tensors["net.blocks.0.mlp.layer1.scale_weight"] = torch.ones(1)
    found = identify(write(tmp_path / "fp8.safetensors", tensors))
    assert found.kind == "dit" and "fp8 scaled" in found.summary and not found.loads and found.fix


def test_qwen3_forms_and_a_qwen25(tmp_path: Path) -> None:
    single = write(tmp_path / "qwen.safetensors", zeros(qwen3_shapes(SIZE.qwen)))
    found = identify(single)
    assert (found.kind, found.loads, found.details["hidden"]) == ("qwen3", True, 16)
    assert "single file" in found.summary and "vocab 151936" in found.summary
    folder = tmp_path / "qwen_folder"
    SIZE.qwen.save_pretrained(folder)
    shutil.copyfile(single, folder / "model.safetensors")
    found = identify(folder)
    assert (found.kind, found.loads) == ("qwen3", True) and "HF folder" in found.summary
    (folder / "model.safetensors").unlink()
    assert not identify(folder).loads
    qwen25 = {
        "model.layers.0.post_attention_layernorm.weight": torch.zeros(8),
        "model.layers.0.self_attn.q_proj.bias": torch.zeros(8),
        "model.embed_tokens.weight": torch.zeros(4, 8),
    }
    found = identify(write(tmp_path / "qwen25.safetensors", qwen25))
    assert not found.loads and "Qwen2" in found.summary and "--qwen3" in found.fix


def test_vae_layouts(tmp_path: Path) -> None:
    original = zeros(vae_shapes(SIZE.vae))
    found = identify(write(tmp_path / "vae.safetensors", original))
    assert (found.kind, found.loads) == ("vae", True) and "original Wan names" in found.summary
    assert "base_dim 8" in found.summary
    from diffusers import AutoencoderKLQwenImage

    model = AutoencoderKLQwenImage(**SIZE.vae.diffusers_kwargs())
    found = identify(write(tmp_path / "vae_diffusers.safetensors", dict(model.state_dict())))
    assert found.loads and "diffusers names" in found.summary
    model.save_pretrained(tmp_path / "vae_folder")
    assert identify(tmp_path / "vae_folder").loads
    wide = dict(original, **{"conv2.weight": torch.zeros(48, 48, 1, 1, 1)})
    found = identify(write(tmp_path / "wan22.safetensors", wide))
    assert found.kind == "vae" and not found.loads and "48" in found.fix


@pytest.mark.parametrize(
    ("keys", "words", "loads"),
    [
        (
            [
                "diffusion_model.blocks.0.self_attn.q_proj.lora_down.weight",
                "diffusion_model.blocks.0.self_attn.q_proj.lora_up.weight",
                "diffusion_model.blocks.0.self_attn.q_proj.alpha",
            ],
            ["LoRA", "diffusion_model.", "lora_down/lora_up", "rank 4", "with alpha"],
            True,
        ),
        (
            [
                "lora_unet_blocks_0_self_attn_q_proj.lora_down.weight",
                "lora_unet_blocks_0_self_attn_q_proj.lora_up.weight",
            ],
            ["kohya lora_unet_", "no alpha"],
            True,
        ),
        (
            [
                "lycoris_blocks_0_mlp_layer1.lokr_w1",
                "lycoris_blocks_0_mlp_layer1.lokr_w2_a",
                "lycoris_blocks_0_mlp_layer1.lokr_w2_b",
            ],
            ["LoKr", "LyCORIS lycoris_"],
            True,
        ),
        (
            [
                "diffusion_model.llm_adapter.blocks.0.self_attn.q_proj.lora_A.weight",
                "diffusion_model.llm_adapter.blocks.0.self_attn.q_proj.lora_B.weight",
            ],
            ["lora_A/lora_B"],
            True,
        ),
        (
            [
                "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight",
                "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight",
            ],
            ["diffusers transformer."],
            True,
        ),
        (
            [
                "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight",
                "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight",
            ],
            ["LoRA"],
            False,
        ),
        (
            ["lora_te_layers_0_self_attn_q_proj.lora_down.weight", "lora_te_layers_0_self_attn_q_proj.lora_up.weight"],
            ["1 text-encoder modules"],
            False,
        ),
        (["lycoris_blocks_0_mlp_layer1.hada_w1_a", "lycoris_blocks_0_mlp_layer1.hada_w1_b"], ["LoHa"], False),
    ],
)
def test_adapter_formats(tmp_path: Path, keys: list[str], words: list[str], loads: bool) -> None:
    tensors = {k: torch.zeros(4, 8) if ("down" in k or "lora_A" in k) else torch.zeros(8, 4) for k in keys}
    found = identify(write(tmp_path / "adapter.safetensors", tensors))
    assert found.kind == "adapter" and found.loads is loads, found
    assert all(word in found.summary for word in words), found.summary
    assert bool(found.fix) is not loads


def test_tokenizers_and_junk(tmp_path: Path) -> None:
    assert identify(ASSETS / "t5_tokenizer").kind == "t5_tokenizer" and identify(ASSETS / "t5_tokenizer").loads
    assert identify(ASSETS / "qwen3_tokenizer").kind == "qwen_tokenizer"
    (tmp_path / "empty").mkdir()
    assert not identify(tmp_path / "empty").loads
    assert identify(tmp_path / "absent").kind == "missing"
    (tmp_path / "model.ckpt").write_bytes(b"PK\x03\x04 not safetensors")
    assert not identify(tmp_path / "model.ckpt").loads
    good = write(tmp_path / "whole.safetensors", {"x": torch.zeros(1000)})
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:-100])
    cut = identify(tmp_path / "cut.safetensors")
    assert not cut.loads and "truncated" in cut.summary and "again" in cut.fix


def test_cli_exit_codes_and_cross_check(tmp_path: Path, dit_state, capsys: pytest.CaptureFixture) -> None:
    dit = tmp_path / "anima.safetensors"
    save_anima_dit(dit_state, dit)
    qwen = write(tmp_path / "qwen.safetensors", zeros(qwen3_shapes(SIZE.qwen)))
    assert check_anima_models.main([str(dit), str(qwen), str(ASSETS / "t5_tokenizer")]) == 0
    out = capsys.readouterr().out
    assert out.count("-> loads") == 3 and "fix:" not in out
    assert check_anima_models.main([str(dit), str(tmp_path / "absent.safetensors")]) == 1
    assert "will NOT load" in capsys.readouterr().out
    wider = make_tiny_anima.qwen3_config(hidden=32, intermediate=48, layers=1, heads=4, kv_heads=2, head_dim=8)
    wrong_qwen = write(tmp_path / "qwen32.safetensors", zeros(qwen3_shapes(wider)))
    assert cross_check([identify(dit), identify(wrong_qwen)])
    assert check_anima_models.main([str(dit), str(wrong_qwen)]) == 1
    assert "together:" in capsys.readouterr().out
