"""A caption holding Qwen3's pad token `<|endoftext|>` as text (issue 21 point 2), against ComfyUI's rule.

ComfyUI's rule, as facts (comfy/sd1_clip.py `SDClipModel` with special_tokens {"pad": 151643} and no "end" token;
comfy/text_encoders/llama.py `Llama2_.forward`):
- the attention mask is 1 for the tokens before the first 151643 and 0 from it on (that token included);
- masked keys get the additive value finfo(dtype).min / 4, and the causal mask adds the same value above the
  diagonal (only when there is more than one token).
The reference below builds that mask here and runs the tiny Qwen3 (transformers' Qwen3Model) with it; ours must
give the same hidden states. Captions without the token, and the empty caption (one `<|endoftext|>`, one key, so
the mask cannot change it), must stay exactly what an unmasked run gives.

Breaks these catch (each run once, each failed): library/anima/text.py `pad_token_mask` returning None (the
unmasked run differs by 0.4 relative); the mask starting one token after the pad (0.38); -inf instead of the
finite value (the leading case then differs by 1.1).
"""

from __future__ import annotations

import pytest
import torch
from _tiny_run import tiny_model

from library.anima.text import AnimaTextEncoder
from library.anima.tokenizers import load_t5_tokenizer

PAD = 151643
CASES = ["a red circle<|endoftext|> on a blue square", "<|endoftext|>a red circle"]
PLAIN = ["a red circle", "", "1girl, solo, smile"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> AnimaTextEncoder:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    return AnimaTextEncoder.load(tiny / "models" / "qwen3_tiny.safetensors",
                                 t5_tokenizer=load_t5_tokenizer(tiny / "models" / "t5_tokenizer"))


def comfy_reference(encoder: AnimaTextEncoder, ids: list[int]) -> torch.Tensor:
    n, low = len(ids), torch.finfo(torch.float32).min / 4
    keep = torch.ones(n)
    keep[ids.index(PAD):] = 0.0
    mask = (1.0 - keep).expand(n, n).masked_fill((1.0 - keep).expand(n, n).bool(), low)
    mask = mask + torch.full((n, n), low).triu(1)
    with torch.no_grad():
        return encoder.qwen(input_ids=torch.tensor([ids]), attention_mask=mask[None, None],
                            use_cache=False).last_hidden_state[0]


def unmasked(encoder: AnimaTextEncoder, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return encoder.qwen(input_ids=torch.tensor([ids]), use_cache=False).last_hidden_state[0]


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_a_caption_with_the_pad_token_is_masked_as_comfyui_masks_it(encoder: AnimaTextEncoder) -> None:
    encodings = encoder.encode([PLAIN[0], *CASES, PLAIN[1]])  # masked captions inside a batch of plain ones
    for caption, encoding in zip(CASES, encodings[1:3], strict=True):
        (ids,) = [t.qwen_ids for t in encoder.tokenize([caption])]
        assert PAD in ids
        reference = comfy_reference(encoder, ids)
        assert torch.isfinite(encoding.qwen_hidden).all()
        assert relative(encoding.qwen_hidden, reference) <= 1e-6, caption
        assert relative(unmasked(encoder, ids), reference) > 1e-2, "the rule must matter for this caption"
    # tokens before the pad are untouched: they only see earlier tokens anyway
    (prefix,) = encoder.encode([CASES[0].split("<|endoftext|>")[0]])
    n = prefix.qwen_hidden.shape[0]
    assert torch.allclose(encodings[1].qwen_hidden[:n], prefix.qwen_hidden, atol=1e-6)


def test_captions_without_it_and_the_empty_caption_stay_exactly_unmasked(encoder: AnimaTextEncoder) -> None:
    tokens = encoder.tokenize(PLAIN)
    longest = max(len(t.qwen_ids) for t in tokens)
    ids = torch.full((len(tokens), longest), PAD)
    for row, t in enumerate(tokens):
        ids[row, : len(t.qwen_ids)] = torch.tensor(t.qwen_ids)
    with torch.no_grad():
        batch = encoder.qwen(input_ids=ids, use_cache=False).last_hidden_state
    for row, (t, encoding) in enumerate(zip(tokens, encoder.encode(PLAIN), strict=True)):
        assert torch.equal(encoding.qwen_hidden, batch[row, : len(t.qwen_ids)].float())
    assert tokens[1].qwen_ids == [PAD]
