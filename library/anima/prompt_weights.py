"""ComfyUI's prompt-weight syntax, so sample prompts written for ComfyUI mean the same thing here.

ComfyUI splits a prompt into weighted pieces before either tokenizer runs, and tokenizes every piece on its own
(which changes the ids even where the weight is 1). The rules, as observed on ComfyUI (see
`tests/fixtures/comfy_conditioning/README.md`):

- `(text)` multiplies the weight by 1.1 per nesting level; `(text:w)` sets it to w (a Python float);
  `(text:abc)` with a non-numeric tail keeps `text:abc` at ×1.1;
- an unbalanced `)` sends the depth below zero, and from there on every bracket is literal text;
  an unclosed `(` stays literal too; `[...]` and `{...}` are plain text;
- `\\(` and `\\)` are literal parentheses (the backslash goes);
- `embedding:<name>` at the start of a piece or after whitespace is a textual-inversion lookup; we have none,
  so, like ComfyUI with a missing file, the name is dropped with a warning and the text after it is its own piece.

Training captions are literal text instead (no weights): `escape_literal_caption` gives the ComfyUI prompt that
means the same, and the text encoder tokenizes such a caption as a single piece.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

NESTING_FACTOR = 1.1
EMBEDDING_TAG = "embedding:"
_ESCAPED_CLOSE, _ESCAPED_OPEN = "\0\1", "\0\2"
_AFTER_WHITESPACE_EMBEDDING = re.compile(r"(?<=\s)" + re.escape(EMBEDDING_TAG))


def escape_literal_caption(text: str) -> str:
    """The ComfyUI prompt that means the literal caption `text`: every parenthesis escaped."""
    return text.replace("(", "\\(").replace(")", "\\)")


def _split_top_level(text: str) -> list[str]:
    """Cut `text` into plain runs and top-level `( ... )` groups; negative depth keeps brackets literal."""
    parts: list[str] = []
    current = ""
    depth = 0
    for char in text:
        if char == "(" and depth == 0:
            if current:
                parts.append(current)
            current = "("
            depth = 1
        elif char == ")" and depth == 1:
            parts.append(current + ")")
            current = ""
            depth = 0
        else:
            current += char
            depth += {"(": 1, ")": -1}.get(char, 0)
    if current:
        parts.append(current)
    return parts


def _weighted_pieces(text: str, weight: float) -> list[tuple[str, float]]:
    pieces: list[tuple[str, float]] = []
    for part in _split_top_level(text):
        if len(part) < 2 or not (part.startswith("(") and part.endswith(")")):
            pieces.append((part, weight))
            continue
        inner, inner_weight = part[1:-1], weight * NESTING_FACTOR
        colon = inner.rfind(":")
        if colon > 0:
            try:
                inner_weight = float(inner[colon + 1 :])
                inner = inner[:colon]
            except ValueError:
                pass
        pieces.extend(_weighted_pieces(inner, inner_weight))
    return pieces


def _drop_embedding(piece: str) -> str:
    """Remove the `embedding:<name>` head of `piece` (warning once); return the text that follows it."""
    words = piece[len(EMBEDDING_TAG) :].strip("\n").split()
    name, rest = (words[0], " ".join(words[1:])) if words else ("", "")
    bracket = re.search(r"[<\[]", name)
    if bracket:
        rest = name[bracket.start() :] + (" " + rest if rest else "")
        name = name[: bracket.start()]
    stripped = name.strip(",")
    if len(stripped) < len(name):
        rest = f"{name[len(stripped) :]} {rest}"
    logger.warning("prompt: embedding:%s does not exist (textual inversion is not supported), ignoring", name)
    return rest


def _split_embeddings(text: str) -> list[str]:
    parts = _AFTER_WHITESPACE_EMBEDDING.split(text)
    pieces = [parts[0]] + [EMBEDDING_TAG + part for part in parts[1:]]
    return [_drop_embedding(p) if p.startswith(EMBEDDING_TAG) else p for p in pieces if p]


def parse_prompt_weights(text: str) -> list[tuple[str, float]]:
    """ComfyUI prompt -> (piece, weight) pairs in order; each piece is tokenized on its own."""
    escaped = text.replace("\\)", _ESCAPED_CLOSE).replace("\\(", _ESCAPED_OPEN)
    result: list[tuple[str, float]] = []
    for piece, weight in _weighted_pieces(escaped, 1.0):
        literal = piece.replace(_ESCAPED_CLOSE, ")").replace(_ESCAPED_OPEN, "(")
        result.extend((part, weight) for part in _split_embeddings(literal) if part)
    return result
