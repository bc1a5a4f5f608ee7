"""`--sdpa` / `--attn_mode`: which `scaled_dot_product_attention` kernels the DiT may use.

All attention in the model goes through `F.scaled_dot_product_attention` (layers.py), so a backend is a
restriction set for `torch.nn.attention.sdpa_kernel`, entered around each attention call (layers.py). `torch`/`sdpa`
(the default) leave the choice to torch; `flash`, `mem_efficient` and `math` force one kernel, and the forward
fails if that kernel cannot run the inputs (e.g. `mem_efficient` on the CPU). xformers and SageAttention compute
the same attention, so `--xformers` / `--attn_mode xformers|sageattn` (kohya's and the seed project's choices) run
with SDPA and say so once (pitfalls.md item 17: kohya's xformers path needs --split_attn, SageAttention has no
backward pass); `--split_attn` is moot, SDPA takes the whole batch.
"""

from __future__ import annotations

import logging

from torch.nn.attention import SDPBackend

from library.anima.layers import set_sdpa_backends
from library.errors import ConfigError

logger = logging.getLogger(__name__)

SDPA_BACKENDS: dict[str, list[SDPBackend] | None] = {
    "torch": None,
    "sdpa": None,
    "flash": [SDPBackend.FLASH_ATTENTION],
    "mem_efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
_SDPA_INSTEAD = {
    "xformers": "xformers computes the same attention as PyTorch's scaled_dot_product_attention (SDPA), which runs "
                "it here (torch picks flash or memory-efficient attention on the GPU); xformers need not be installed",
    "sageattn": "SageAttention is an inference kernel without a backward pass; PyTorch's scaled_dot_product_attention "
                "(SDPA) runs the same attention here, exactly",
}
_SPLIT = "--split_attn is not needed: SDPA takes the whole batch at once"


def resolve_attn_mode(
    attn_mode: str | None, xformers: bool = False, split_attn: bool = False
) -> list[SDPBackend] | None:
    """The SDPA kernels `--attn_mode` allows (None: torch's choice); `--attn_mode` overrides `--xformers`. A kernel
    that SDPA stands in for is warned about once, with `--split_attn` in the same line."""
    if attn_mode is None:
        attn_mode = "xformers" if xformers else "sdpa"
    option = "--xformers" if attn_mode == "xformers" and xformers else f"--attn_mode {attn_mode}"
    if attn_mode in _SDPA_INSTEAD:
        split = f"; {_SPLIT}" if split_attn else ""
        logger.warning("%s: %s%s.", option, _SDPA_INSTEAD[attn_mode], split)
        attn_mode = "sdpa"
    elif split_attn:
        logger.warning("%s.", _SPLIT)
    if attn_mode not in SDPA_BACKENDS:
        raise ConfigError(f"--attn_mode {attn_mode!r} is unknown; use one of {sorted(SDPA_BACKENDS)}.")
    return SDPA_BACKENDS[attn_mode]


def apply_sdpa_backends(backends: list[SDPBackend] | None) -> None:
    """Make every attention call of the model use only `backends` (None: torch's choice)."""
    set_sdpa_backends(backends)
