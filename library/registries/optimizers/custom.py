"""Optimizers not in the registry, as kohya allows: a `torch.optim` class name (`RMSprop`) or a dotted
`package.module.Class` path (both case-sensitive)."""

from __future__ import annotations

import importlib

from library.errors import ConfigError

from .base import OptimizerEntry


def custom_entry(name: str, valid_names: list[str]) -> OptimizerEntry:
    """Import the class now (the user named it, so the import is wanted) and wrap it as an entry."""
    import torch
    hint = f"Valid names: {', '.join(valid_names)}; or a torch.optim class name, or a dotted module.Class path."
    module_name, _, class_name = name.rpartition(".")
    if module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(
                f"--optimizer_type {name}: cannot import module {module_name!r} ({exc}). {hint}"
            ) from None
    else:
        module = torch.optim
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"--optimizer_type: unknown optimizer {name!r}. {hint}")
    schedule_free = class_name.lower().endswith("schedulefree") and hasattr(cls, "eval")
    return OptimizerEntry(load_class=lambda: cls, schedule_free=schedule_free)
