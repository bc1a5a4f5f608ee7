"""The records model-file detection answers with: a tensor's dtype and shape from a header, and a path's identity.

Their own module, so that the file-kind detectors (detect.py, detect_adapters.py) import them one way."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


@dataclass
class Finding:
    """One path's identity: `summary` says what it is, `loads` whether our loaders accept it, `fix` how."""

    path: str
    kind: str  # dit | qwen3 | vae | t5_tokenizer | qwen_tokenizer | adapter | unknown | missing
    summary: str
    loads: bool
    fix: str = ""
    details: dict = field(default_factory=dict)
