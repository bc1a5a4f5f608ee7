"""Our caption conditioning equals ComfyUI's, on the golden data ComfyUI itself computed (tiny weights, fp32).

The fixture (`tests/fixtures/comfy_conditioning/`) marks which captions ComfyUI encodes
literally; the others use its prompt syntax. Dataset captions are literal text (decision 3): c09's text taken
literally must give ComfyUI's result for the escaped prompt c05.
"""

from __future__ import annotations

import json

import pytest
import torch
from _fixtures import comfy_fixture
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase

from library.anima.conditioning import build_context, collate_text, encode_captions_to_context
from library.anima.llm_adapter import LLMAdapter, LLMAdapterConfig
from library.anima.prompt_weights import escape_literal_caption
from library.anima.qwen3 import load_qwen3
from library.anima.text import AnimaTextEncoder, TextEncoding, tokenize_caption
from library.anima.tokenizers import load_qwen_tokenizer, load_t5_tokenizer

LITERAL = ["c00", "c01", "c02", "c03", "c04", "c06", "c07", "c10"]  # README: "literal = ComfyUI? yes"
SYNTAX = ["c05", "c08", "c09", "c11"]
TOL = 1e-5


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(comfy_fixture("golden.safetensors"))


@pytest.fixture(scope="module")
def captions() -> dict[str, str]:
    return json.loads(comfy_fixture("captions.json").read_text(encoding="utf-8"))["captions"]


@pytest.fixture(scope="module")
def tokenizers() -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    return load_qwen_tokenizer(), load_t5_tokenizer()


@pytest.fixture(scope="module", params=["tiny_qwen3/model.safetensors", "tiny_qwen3"], ids=["single_file", "folder"])
def encoder(request: pytest.FixtureRequest, tokenizers: tuple) -> AnimaTextEncoder:
    return AnimaTextEncoder(load_qwen3(comfy_fixture(request.param)), *tokenizers)


@pytest.fixture(scope="module")
def adapter() -> LLMAdapter:
    state = {k.removeprefix("llm_adapter."): v for k, v in load_file(comfy_fixture("tiny_adapter.safetensors")).items()}
    model_dim = state["embed.weight"].shape[1]
    config = LLMAdapterConfig(
        source_dim=state["blocks.0.cross_attn.k_proj.weight"].shape[1],
        target_dim=model_dim,
        model_dim=model_dim,
        num_layers=len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
        num_heads=model_dim // state["blocks.0.self_attn.q_norm.weight"].shape[0],
        vocab_size=state["embed.weight"].shape[0],
    )
    module = LLMAdapter(config)
    module.load_state_dict(state, strict=True)
    return module.eval()


def assert_tokens(tokenizers: tuple, text: str, parse: bool, golden: dict, key: str) -> None:
    tokens = tokenize_caption(*tokenizers, text, parse_weights=parse)
    assert tokens.qwen_ids == golden[f"{key}.qwen_ids"].tolist(), key
    assert tokens.t5_ids == golden[f"{key}.t5_ids"].tolist(), key
    assert torch.equal(torch.tensor(tokens.t5_weights, dtype=torch.float32), golden[f"{key}.t5_weights"]), key


def test_fixture_lists_every_caption(captions: dict, golden: dict) -> None:
    assert sorted(LITERAL + SYNTAX) == sorted(captions) == sorted({k.split(".")[0] for k in golden})


@pytest.mark.parametrize("key", LITERAL)
def test_literal_captions_tokenize_like_comfyui(tokenizers: tuple, captions: dict, golden: dict, key: str) -> None:
    assert_tokens(tokenizers, captions[key], False, golden, key)
    assert_tokens(tokenizers, captions[key], True, golden, key)  # no syntax in them: both paths agree


@pytest.mark.parametrize("key", SYNTAX)
def test_prompt_syntax_tokenizes_like_comfyui(tokenizers: tuple, captions: dict, golden: dict, key: str) -> None:
    assert_tokens(tokenizers, captions[key], True, golden, key)


def test_literal_caption_equals_comfyui_escaped_prompt(tokenizers: tuple, captions: dict, golden: dict) -> None:
    literal = captions["c09"]  # "hatsune miku (cosplay), ..." as a kohya-style caption file has it
    assert_tokens(tokenizers, literal, False, golden, "c05")
    assert_tokens(tokenizers, escape_literal_caption(literal), True, golden, "c05")
    assert tokenize_caption(*tokenizers, captions["c05"], False).t5_ids != golden["c05.t5_ids"].tolist()


def encode_one(encoder: AnimaTextEncoder, captions: dict, key: str) -> TextEncoding:
    return encoder.encode([captions[key]], parse_weights=key in SYNTAX)[0]


@pytest.mark.parametrize("key", LITERAL + SYNTAX)
def test_qwen_hidden_and_context_match(
    encoder: AnimaTextEncoder, adapter: LLMAdapter, captions: dict, golden: dict, key: str
) -> None:
    encoding = encode_one(encoder, captions, key)
    assert encoding.qwen_hidden.dtype == torch.float32
    torch.testing.assert_close(encoding.qwen_hidden, golden[f"{key}.qwen_hidden"], atol=TOL, rtol=0)
    with torch.no_grad():
        context = encode_captions_to_context(encoder, adapter, [captions[key]], parse_weights=key in SYNTAX)[0]
    assert context.shape == golden[f"{key}.context"].shape
    torch.testing.assert_close(context, golden[f"{key}.context"], atol=TOL, rtol=0)


def test_batch_equals_one_by_one(encoder: AnimaTextEncoder, adapter: LLMAdapter, captions: dict, golden: dict) -> None:
    keys = ["c01", "c00", "c03", "c07", "c06"]  # empty, 700 T5 tokens and short ones together
    texts = [captions[k] for k in keys]
    batched = encoder.encode(texts)
    with torch.no_grad():
        context = build_context(adapter, collate_text(batched))
    assert context.shape == (len(keys), 700, 32)  # the longest caption sets the rows for all (docs say why)
    for row, key in enumerate(keys):
        single = encode_one(encoder, captions, key)
        torch.testing.assert_close(batched[row].qwen_hidden, single.qwen_hidden, atol=TOL, rtol=0)
        with torch.no_grad():
            alone = build_context(adapter, collate_text([single]))[0]
        rows = alone.shape[0]  # 512, or 700 for c03
        torch.testing.assert_close(context[row, :rows], alone, atol=TOL, rtol=0)
        torch.testing.assert_close(context[row, :rows], golden[f"{key}.context"], atol=TOL, rtol=0)
        assert torch.count_nonzero(context[row, rows:]) == 0


def test_empty_caption_is_one_unmasked_endoftext(encoder: AnimaTextEncoder, adapter: LLMAdapter, golden: dict) -> None:
    encoding = encoder.encode([""])[0]
    assert encoding.t5_ids.tolist() == [1] and encoding.qwen_hidden.shape[0] == 1
    with torch.no_grad():
        context = build_context(adapter, collate_text([encoding]))[0]
    assert torch.count_nonzero(context[1:]) == 0
    # kohya-style dropout (Qwen fully masked) is a different row 0; ours must be ComfyUI's
    assert (context[0] - golden["c00.context"][0]).abs().max() < TOL
    assert context[0].abs().max() > 0.1


def test_context_keeps_gradients_for_adapter_training(
    encoder: AnimaTextEncoder, adapter: LLMAdapter, captions: dict
) -> None:
    context = encode_captions_to_context(encoder, adapter, [captions["c01"], captions["c08"]], parse_weights=True)
    context.square().sum().backward()
    grad = adapter.blocks[0].cross_attn.q_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    adapter.zero_grad(set_to_none=True)
