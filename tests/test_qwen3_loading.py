"""Qwen3 loading: the single ComfyUI file and the HF folder give the same model; wrong files say what they are."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _fixtures import comfy_fixture
from safetensors.torch import load_file, save_file

from library.anima.qwen3 import load_qwen3
from library.anima.text import AnimaTextEncoder
from library.errors import ModelFileError

IDS = torch.tensor([[16, 28552, 11, 13529, 151643]])


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return comfy_fixture("tiny_qwen3/model.safetensors").parents[1]


def hidden(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).last_hidden_state.float()


def test_single_file_config_is_inferred_from_shapes(fixture_dir: Path) -> None:
    model = load_qwen3(fixture_dir / "tiny_qwen3" / "model.safetensors")
    c = model.config
    sizes = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim)
    assert sizes == (16, 2, 4, 2, 8)
    assert (c.intermediate_size, c.vocab_size, c.rms_norm_eps) == (48, 151936, 1e-6)
    assert c.rope_parameters["rope_theta"] == 1e6
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_single_file_equals_folder(fixture_dir: Path, tmp_path: Path) -> None:
    folder = hidden(load_qwen3(fixture_dir / "tiny_qwen3"))
    single = hidden(load_qwen3(fixture_dir / "tiny_qwen3" / "model.safetensors"))
    torch.testing.assert_close(single, folder, atol=0, rtol=0)
    # diffusers-style keys without the `model.` prefix load too
    state = {
        k.removeprefix("model."): v for k, v in load_file(fixture_dir / "tiny_qwen3" / "model.safetensors").items()
    }
    save_file(state, tmp_path / "stripped.safetensors")
    torch.testing.assert_close(hidden(load_qwen3(tmp_path / "stripped.safetensors")), folder, atol=0, rtol=0)


@pytest.mark.parametrize("form", ["tiny_qwen3/model.safetensors", "tiny_qwen3"])
def test_dtype_is_chosen_at_load_and_nothing_stays_on_meta(fixture_dir: Path, form: str) -> None:
    model = load_qwen3(fixture_dir / form, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    assert model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.isfinite(hidden(model)).all()


def write(path: Path, keys: list[str]) -> Path:
    save_file({k: torch.zeros(2, 2) for k in keys}, path)
    return path


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        (["decoder.upsamples.0.weight", "encoder.downsamples.0.weight"], "VAE"),
        (["encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"], "T5 text encoder"),
        (["lora_unet_blocks_0_self_attn_q_proj.lora_down.weight"], "LoRA"),
        (["model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"], "not Qwen3"),
        (["something.else"], "unknown file with 1 tensors"),
    ],
)
def test_wrong_file_names_what_it_is(tmp_path: Path, keys: list[str], named: str) -> None:
    with pytest.raises(ModelFileError, match=named) as caught:
        load_qwen3(write(tmp_path / "x.safetensors", keys))
    assert "--qwen3" in str(caught.value) and "x.safetensors" in str(caught.value)


def test_dit_and_other_paths_are_refused(fixture_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="Anima DiT"):
        load_qwen3(fixture_dir / "tiny_dit.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_qwen3(tmp_path / "broken.safetensors")
    with pytest.raises(ModelFileError, match="only .safetensors"):
        load_qwen3(fixture_dir / "captions.json")
    with pytest.raises(ModelFileError, match="nothing at that path"):
        load_qwen3(tmp_path / "absent.safetensors")
    with pytest.raises(ModelFileError, match="without config.json"):
        load_qwen3(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    with pytest.raises(ModelFileError, match="'llama'"):
        load_qwen3(tmp_path)


def test_text_encoder_load_from_folder(fixture_dir: Path) -> None:
    encoder = AnimaTextEncoder.load(fixture_dir / "tiny_qwen3")
    empty, tags = encoder.encode(["", "1girl, solo"])
    assert empty.qwen_hidden.shape == (1, 16) and empty.t5_ids.tolist() == [1]
    assert tags.qwen_hidden.dtype == torch.float32 and tags.t5_weights.tolist() == [1.0] * len(tags.t5_ids)
