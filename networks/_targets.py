"""Which modules of the Anima DiT an adapter network wraps (README decision 6).

Default: the attention and MLP Linears of every DiT `Block`, the Linears of every `llm_adapter` block
(self/cross q,k,v,o and mlp.0/mlp.2, as kohya's `train_llm_adapter` and the seed project choose;
`llm_adapter.out_proj` is not a default target, like kohya and LyCORIS), and every norm that has a scale
(the RMSNorms; Anima's DiT LayerNorms have no weight). `include_patterns` adds any Linear or norm whose path
full-matches; `exclude_patterns` removes matches unless an include pattern also matches (kohya's rule).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import torch.nn as nn

from library.errors import ConfigError

logger = logging.getLogger(__name__)

DIT_LINEARS = re.compile(r"blocks\.\d+\.(?:(?:self|cross)_attn\.(?:q|k|v|output)_proj|mlp\.layer[12])")
ADAPTER_LINEARS = re.compile(r"llm_adapter\.blocks\.\d+\.(?:(?:self|cross)_attn\.(?:q|k|v|o)_proj|mlp\.[02])")
ADAPTER_PREFIX = "llm_adapter."


@dataclass
class TargetRules:
    train_llm_adapter: bool = True
    train_norm: bool = True
    include: list[re.Pattern[str]] = field(default_factory=list)
    exclude: list[re.Pattern[str]] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"include_patterns={[p.pattern for p in self.include]}, exclude_patterns={[p.pattern for p in self.exclude]}, "
            f"train_llm_adapter={self.train_llm_adapter}, train_norm={self.train_norm}"
        )


def is_norm(module: nn.Module) -> bool:
    """A norm with a trainable 1-D scale (affine-less LayerNorms have `weight = None` and are skipped)."""
    weight = getattr(module, "weight", None)
    return "Norm" in type(module).__name__ and isinstance(weight, nn.Parameter) and weight.dim() == 1


def is_adapter(path: str) -> bool:
    return path.startswith(ADAPTER_PREFIX)


def _is_default(path: str, rules: TargetRules, linear: bool) -> bool:
    if is_adapter(path) and not rules.train_llm_adapter:
        return False
    if not linear:
        return True
    return bool(DIT_LINEARS.fullmatch(path) or ADAPTER_LINEARS.fullmatch(path))


def _selected(path: str, rules: TargetRules, linear: bool) -> bool:
    included = any(p.fullmatch(path) for p in rules.include)
    excluded = any(p.fullmatch(path) for p in rules.exclude)
    return included or (_is_default(path, rules, linear) and not excluded)


def find_targets(
    unet: nn.Module, rules: TargetRules
) -> tuple[list[tuple[str, nn.Linear]], list[tuple[str, nn.Module]]]:
    """(Linears, norms) to wrap, in module order; raises ConfigError when nothing is selected."""
    linears: list[tuple[str, nn.Linear]] = []
    norms: list[tuple[str, nn.Module]] = []
    for path, module in unet.named_modules():
        if isinstance(module, nn.Linear) and _selected(path, rules, linear=True):
            linears.append((path, module))
        elif rules.train_norm and is_norm(module) and _selected(path, rules, linear=False):
            norms.append((path, module))
    if not linears and not norms:
        raise ConfigError(f"--network_args selects no module of the DiT ({rules.describe()}): nothing would be "
                          f"trained. Loosen exclude_patterns (a pattern must full-match the module path, e.g. "
                          f"'blocks\\.0\\..*'), or add include_patterns.")
    return linears, norms


# kohya's `lora_anima` wraps every Linear inside Qwen3's attention and MLP blocks (q/k/v/o_proj, gate/up/down_proj:
# 7 per layer); the class names cover transformers' attention implementations.
TEXT_ENCODER_BLOCKS = ("Qwen3Attention", "Qwen3MLP", "Qwen3SdpaAttention", "Qwen3FlashAttention2")


def text_encoder_module(text_encoders: list | None) -> nn.Module | None:
    """The Qwen3 module of kohya's `text_encoders` list: the first entry that is a module, or a wrapper's `.qwen`
    (the trainer's text encoder holds its tokenizers beside it). None when there is none (outputs cached)."""
    for encoder in text_encoders or []:
        module = encoder if isinstance(encoder, nn.Module) else getattr(encoder, "qwen", None)
        if isinstance(module, nn.Module):
            return module
    return None


def find_text_encoder_targets(text_encoder: nn.Module, rules: TargetRules) -> list[tuple[str, nn.Linear]]:
    """The Linears of Qwen3's attention and MLP blocks, by their path in the Qwen3 model (kohya's `original_name`,
    which `exclude_patterns` / `include_patterns` full-match, as kohya matches them for the text encoder too)."""
    found: list[tuple[str, nn.Linear]] = []
    for name, block in text_encoder.named_modules():
        if type(block).__name__ not in TEXT_ENCODER_BLOCKS:
            continue
        for child_name, child in block.named_modules():
            path = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and (any(p.fullmatch(path) for p in rules.include)
                                                 or not any(p.fullmatch(path) for p in rules.exclude)):
                found.append((path, child))
    return found
