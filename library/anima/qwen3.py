"""Load Anima's text encoder, Qwen3-0.6B, as transformers' `Qwen3Model`, from either form users have.

- A Hugging Face folder (config.json + weights): `from_pretrained` with the dtype and device chosen at load.
- ComfyUI's single file (`qwen_3_06b_base.safetensors`: `model.`-prefixed keys, no `lm_head`): the sizes are
  read from the tensor shapes (so tiny test models load too), the model is built on the meta device and the
  tensors are assigned straight from the file in the target dtype/device, so the weights exist only once.

Anything else (a DiT, a VAE, a T5 encoder, a LoRA, ...) is a `ModelFileError` that says what the file is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import Qwen3Config, Qwen3Model
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding

from library.errors import ModelFileError

EXPECTED = "a Qwen3 text encoder (qwen_3_06b_base.safetensors or a Hugging Face Qwen3 folder)"
FIX = "Pass the Qwen3-0.6B text encoder with --qwen3."
ROPE_THETA = 1_000_000.0  # Qwen3-0.6B; a single file does not record it
RMS_NORM_EPS = 1e-6
MAX_POSITIONS = 32768
_LAYER = re.compile(r"layers\.(\d+)\.")


def describe_foreign_file(keys: list[str]) -> str:
    """Name what a safetensors file that is not a Qwen3 encoder most likely is, from its keys."""
    joined = "\n".join(keys)
    guesses = [
        ("lora_down", "a LoRA/LyCORIS adapter file"),
        ("lora_A", "a LoRA/LyCORIS adapter file"),
        ("lokr_w", "a LoRA/LyCORIS adapter file"),
        ("llm_adapter.", "Anima DiT or llm_adapter weights"),
        ("x_embedder.", "a DiT (diffusion model)"),
        ("adaln_modulation", "a DiT (diffusion model)"),
        ("decoder.upsamples", "a VAE (Wan / Qwen-Image VAE)"),
        ("encoder.downsamples", "a VAE (Wan / Qwen-Image VAE)"),
        ("decoder.up_blocks", "a VAE"),
        ("SelfAttention", "a T5 text encoder (Anima needs Qwen3; only T5's tokenizer is used)"),
        ("text_model.encoder", "a CLIP text encoder"),
        ("self_attn.q_proj", "a transformer LLM that is not Qwen3 (no q_norm/k_norm)"),
    ]
    for marker, what in guesses:
        if marker in joined:
            return f"{what} ({len(keys)} tensors)"
    return f"an unknown file with {len(keys)} tensors (first key: {keys[0] if keys else 'none'})"


def _error(path: Path, found: str) -> ModelFileError:
    return ModelFileError(path, EXPECTED, found, FIX)


def infer_qwen3_config(shapes: dict[str, tuple[int, ...]]) -> Qwen3Config:
    """Qwen3 sizes from prefix-free tensor shapes; constants Qwen3-0.6B has but a file does not record."""
    vocab, hidden = shapes["embed_tokens.weight"]
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := _LAYER.match(k)))
    head_dim = shapes["layers.0.self_attn.q_norm.weight"][0]
    return Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=shapes["layers.0.mlp.gate_proj.weight"][0],
        num_hidden_layers=layers,
        num_attention_heads=shapes["layers.0.self_attn.q_proj.weight"][0] // head_dim,
        num_key_value_heads=shapes["layers.0.self_attn.k_proj.weight"][0] // head_dim,
        head_dim=head_dim,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=RMS_NORM_EPS,
        rope_parameters={"rope_theta": ROPE_THETA, "rope_type": "default"},
        tie_word_embeddings=True,
        max_window_layers=layers,
        bos_token_id=151643,
        eos_token_id=151643,
    )


def _load_single_file(path: Path, dtype: torch.dtype, device: torch.device) -> Qwen3Model:
    try:
        handle = safe_open(str(path), framework="pt", device=str(device))
    except (SafetensorError, OSError) as err:
        raise _error(path, f"a file safetensors cannot read ({err})") from err
    with handle as file:
        keys = list(file.keys())
        prefix = "model." if "model.embed_tokens.weight" in keys else ""
        names = {k[len(prefix) :]: k for k in keys if k.startswith(prefix) and k != "lm_head.weight"}
        if "embed_tokens.weight" not in names or "layers.0.self_attn.q_norm.weight" not in names:
            raise _error(path, describe_foreign_file(keys))
        shapes = {name: tuple(file.get_slice(key).get_shape()) for name, key in names.items()}
        config = infer_qwen3_config(shapes)
        config._attn_implementation = "sdpa"
        with torch.device("meta"):
            model = Qwen3Model(config)
        expected = set(model.state_dict())
        if set(names) != expected:
            missing, extra = sorted(expected - set(names)), sorted(set(names) - expected)
            raise _error(path, f"a Qwen3-like file whose keys do not fit (missing {missing[:3]}, extra {extra[:3]})")
        state = {name: file.get_tensor(key).to(dtype) for name, key in names.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.rotary_emb = Qwen3RotaryEmbedding(config).to(device)
    return model


def _load_folder(path: Path, dtype: torch.dtype, device: torch.device) -> Qwen3Model:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise _error(path, "a folder without config.json")
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    if model_type != "qwen3":
        raise _error(path, f"a folder whose config.json has model_type {model_type!r}")
    return Qwen3Model.from_pretrained(str(path), dtype=dtype, device_map={"": device}, attn_implementation="sdpa")


def load_qwen3(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Qwen3Model:
    """Qwen3 encoder in eval mode with frozen weights, loaded in `dtype` on `device`."""
    path, device = Path(path), torch.device(device)
    if path.is_dir():
        model = _load_folder(path, dtype, device)
    elif path.is_file():
        if path.suffix != ".safetensors":
            raise _error(path, f"a {path.suffix or 'suffix-less'} file (only .safetensors is read)")
        model = _load_single_file(path, dtype, device)
    else:
        raise _error(path, "nothing at that path")
    return model.eval().requires_grad_(False)
