"""`--sdpa` / `--attn_mode`: which `scaled_dot_product_attention` kernels the DiT may use.

All attention in the model goes through `F.scaled_dot_product_attention` (layers.py), so a backend is a
restriction set for `torch.nn.attention.sdpa_kernel`, entered around each attention call (layers.py). `torch`/`sdpa`
(the default) leave the choice to torch; `flash`, `mem_efficient` and `math` force one kernel, and the forward
fails if that kernel cannot run the inputs (e.g. `mem_efficient` on the CPU). xformers and SageAttention are
not used here (pitfalls.md item 17: kohya's xformers path needs --split_attn, SageAttention is inference-only).
"""

from __future__ import annotations

from torch.nn.attention import SDPBackend

from library.anima.layers import set_sdpa_backends
from library.errors import ConfigError

SDPA_BACKENDS: dict[str, list[SDPBackend] | None] = {
    "torch": None,
    "sdpa": None,
    "flash": [SDPBackend.FLASH_ATTENTION],
    "mem_efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}
_UNSUPPORTED = {
    "xformers": "xformers is not supported by this trainer",
    "sageattn": "SageAttention is inference-only and not supported by this trainer",
}


def resolve_attn_mode(attn_mode: str | None, xformers: bool = False) -> list[SDPBackend] | None:
    """The SDPA kernels `--attn_mode` allows (None: torch's choice); `--attn_mode` overrides `--xformers`."""
    if attn_mode is None:
        attn_mode = "xformers" if xformers else "sdpa"
    option = "--xformers" if attn_mode == "xformers" and xformers else f"--attn_mode {attn_mode}"
    if attn_mode in _UNSUPPORTED:
        raise ConfigError(
            f"{option}: {_UNSUPPORTED[attn_mode]}. Use --sdpa (the default; torch picks flash or memory-efficient "
            "attention on the GPU) or --attn_mode flash."
        )
    if attn_mode not in SDPA_BACKENDS:
        raise ConfigError(f"--attn_mode {attn_mode!r} is unknown; use one of {sorted(SDPA_BACKENDS)}.")
    return SDPA_BACKENDS[attn_mode]


def apply_sdpa_backends(backends: list[SDPBackend] | None) -> None:
    """Make every attention call of the model use only `backends` (None: torch's choice)."""
    set_sdpa_backends(backends)
