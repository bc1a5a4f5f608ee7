"""bitsandbytes optimizers (8-bit states, paged states, 32-bit Lion), imported only when chosen.

bitsandbytes takes seconds to import, so start-up validation only checks it is installed; unknown
`--optimizer_args` keys for these are reported when the optimizer is built.
"""

from __future__ import annotations

import importlib

from .base import OptimizerEntry


def _bnb(class_name: str, **extra: object) -> OptimizerEntry:
    def load() -> type:
        return getattr(importlib.import_module("bitsandbytes.optim"), class_name)

    return OptimizerEntry(load_class=load, package="bitsandbytes", eager_check=False, **extra)  # type: ignore[arg-type]


ADAMW_8BIT = _bnb("AdamW8bit")
PAGED_ADAMW = _bnb("PagedAdamW")
PAGED_ADAMW_8BIT = _bnb("PagedAdamW8bit")
PAGED_ADAMW_32BIT = _bnb("PagedAdamW32bit")
LION = _bnb("Lion")  # kohya uses lion-pytorch; bitsandbytes' 32-bit Lion is the same update rule
LION_8BIT = _bnb("Lion8bit")
PAGED_LION_8BIT = _bnb("PagedLion8bit")
SGD_NESTEROV_8BIT = _bnb("SGD8bit", defaults={"momentum": 0.9}, fixed={"nesterov": True})
