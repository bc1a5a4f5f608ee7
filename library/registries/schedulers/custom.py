"""`--lr_scheduler_type pkg.mod.Class`: any scheduler class, built with `--lr_scheduler_args` (kohya)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from library.errors import ConfigError


def load_scheduler_class(path: str) -> type:
    """Import `path`; a bare class name is looked up in `torch.optim.lr_scheduler`, as kohya does."""
    import torch
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else torch.optim.lr_scheduler
    except ImportError as exc:
        raise ConfigError(f"--lr_scheduler_type {path}: cannot import {module_name!r} ({exc}).") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(
            f"--lr_scheduler_type: {path!r} is not a class (write module.Class or a torch.optim.lr_scheduler name)."
        )
    return cls


def build_custom(path: str, opt: torch.optim.Optimizer, kwargs: dict[str, Any]) -> Any:
    try:
        return load_scheduler_class(path)(opt, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--lr_scheduler_type {path} rejected --lr_scheduler_args {kwargs}: {exc}") from None
