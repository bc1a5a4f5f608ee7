"""Optimizer registry (`--optimizer_type`), start-up validation and `build_optimizer`."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import logging
import re
from typing import Any

from library.errors import ConfigError

from ..kv_args import parse_kv_args
from ..registry import Registry
from . import adafactor, prodigy, torch_optimizers
from . import bitsandbytes_optimizers as bnb
from . import schedule_free as sf
from .base import OptimizerBundle, OptimizerEntry
from .custom import custom_entry
from .fused_backward import validate_fused_backward
from .pytorch_optimizer import is_pytorch_optimizer, pytorch_optimizer_entry

logger = logging.getLogger(__name__)

OPTIMIZERS: Registry[OptimizerEntry] = Registry("--optimizer_type")
OPTIMIZERS.register("AdamW", torch_optimizers.ADAMW)
OPTIMIZERS.register("AdamW8bit", bnb.ADAMW_8BIT)
OPTIMIZERS.register("PagedAdamW", bnb.PAGED_ADAMW)
OPTIMIZERS.register("PagedAdamW8bit", bnb.PAGED_ADAMW_8BIT)
OPTIMIZERS.register("PagedAdamW32bit", bnb.PAGED_ADAMW_32BIT)
OPTIMIZERS.register("Lion", bnb.LION)
OPTIMIZERS.register("Lion8bit", bnb.LION_8BIT)
OPTIMIZERS.register("PagedLion8bit", bnb.PAGED_LION_8BIT)
OPTIMIZERS.register("SGDNesterov", torch_optimizers.SGD_NESTEROV)
OPTIMIZERS.register("SGDNesterov8bit", bnb.SGD_NESTEROV_8BIT)
OPTIMIZERS.register("Prodigy", prodigy.PRODIGY)
OPTIMIZERS.register("AdaFactor", adafactor.ADAFACTOR)
OPTIMIZERS.register("RAdamScheduleFree", sf.RADAM_SCHEDULE_FREE, aliases=["radam_schedulefree"])
OPTIMIZERS.register("AdamWScheduleFree", sf.ADAMW_SCHEDULE_FREE, aliases=["adamw_schedulefree"])
OPTIMIZERS.register("SGDScheduleFree", sf.SGD_SCHEDULE_FREE, aliases=["sgd_schedulefree"])

__all__ = [
    "OPTIMIZERS",
    "OptimizerBundle",
    "build_optimizer",
    "check_optimizer_builds",
    "optimizer_entry",
    "optimizer_identity",
    "optimizer_name",
    "validate_optimizer",
]


def optimizer_name(args: argparse.Namespace) -> str:
    """`--optimizer_type`, or kohya's legacy `--use_8bit_adam` / `--use_lion_optimizer`, or AdamW."""
    name = (getattr(args, "optimizer_type", None) or "").strip()
    legacy = [
        flag
        for flag, value in (("--use_8bit_adam", "AdamW8bit"), ("--use_lion_optimizer", "Lion"))
        if getattr(args, flag[2:], False)
    ]
    if name and legacy:
        raise ConfigError(
            f"--optimizer_type {name} and {legacy[0]} both choose an optimizer; keep only --optimizer_type."
        )
    if len(legacy) > 1:
        raise ConfigError("--use_8bit_adam and --use_lion_optimizer both choose an optimizer; use --optimizer_type.")
    if legacy:
        return "AdamW8bit" if legacy[0] == "--use_8bit_adam" else "Lion"
    return name or "AdamW"


def optimizer_entry(args: argparse.Namespace) -> tuple[str, OptimizerEntry]:
    """The canonical name and entry; an unregistered name is a `pytorch_optimizer.<Class>`, a torch.optim class or a
    dotted path."""
    name = optimizer_name(args)
    canonical = OPTIMIZERS.canonical(name)
    if canonical is not None:
        return canonical, OPTIMIZERS.get(canonical)
    if is_pytorch_optimizer(name):
        return name, pytorch_optimizer_entry(name)
    return name, custom_entry(name, OPTIMIZERS.names())


def optimizer_identity(args: argparse.Namespace) -> dict[str, Any]:
    """What a resumed state must share: its optimizer.bin only loads into the same optimizer (another one fails deep
    in torch), and the saved hyperparameters would silently replace changed --optimizer_args. Values as repr, so
    they compare equal after the JSON round trip of train_state.json (tuples come back as lists)."""
    kwargs = parse_kv_args(getattr(args, "optimizer_args", None), "--optimizer_args")
    return {"optimizer_type": optimizer_entry(args)[0], "optimizer_args": {k: repr(v) for k, v in kwargs.items()}}


def _check_kwargs(name: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Reject `--optimizer_args` keys the constructor does not take, naming the accepted ones."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [key for key in params if key not in ("self", "params", "lr")]
    unknown = [key for key in kwargs if key not in params]
    if unknown:
        raise ConfigError(
            f"--optimizer_args: {name} does not take {', '.join(unknown)}. It accepts: {', '.join(accepted)}."
        )


def validate_optimizer(args: argparse.Namespace) -> None:
    """Name, package, `--optimizer_args` and learning rates, without building anything."""
    name, entry = optimizer_entry(args)
    validate_fused_backward(args, name)
    if entry.package and importlib.util.find_spec(entry.package) is None:
        raise ConfigError(f"--optimizer_type {name} needs the Python package {entry.package!r}; install it with pip.")
    kwargs = parse_kv_args(getattr(args, "optimizer_args", None), "--optimizer_args")
    if entry.eager_check and kwargs:  # our own defaults always fit; loading the class may import torch
        _check_kwargs(name, entry.load_class(), {**entry.defaults, **kwargs})
    for option in ("learning_rate", "unet_lr", "llm_adapter_lr", "norm_lr", "text_encoder_lr"):
        value = getattr(args, option, None)
        values = value if isinstance(value, list | tuple) else [value]
        if any(v is not None and v < 0 for v in values):
            raise ConfigError(f"--{option} must not be negative (got {value}).")
    lr = getattr(args, "learning_rate", None)
    if name == "Prodigy" and lr is not None and lr <= 0.1:
        logger.warning("Prodigy adapts the step size itself; --learning_rate is usually 1.0 (got %s)", lr)


def _describe(cls: type, kwargs: dict[str, Any]) -> str:
    """kohya's `ss_optimizer`: `module.Class(key=value,...)`, arguments omitted when there are none."""
    text = f"{cls.__module__}.{cls.__name__}"
    return text + (f"({','.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")


_ARGS_FIX = ("Fix that value: --optimizer_args takes key=value pairs with Python literals, e.g. "
             "--optimizer_args \"betas=(0.9,0.999)\" \"weight_decay=0.01\".")


def build_optimizer(args: argparse.Namespace, param_groups: list) -> OptimizerBundle:
    """Build the optimizer for `param_groups` (the network's `prepare_optimizer_params` result) from
    `--optimizer_type`, `--optimizer_args` and `--learning_rate`."""
    name, entry = optimizer_entry(args)
    kwargs = {**entry.defaults, **parse_kv_args(getattr(args, "optimizer_args", None), "--optimizer_args")}
    lr = args.learning_rate
    groups = list(param_groups)
    if entry.prepare is not None:
        lr, kwargs, groups = entry.prepare(lr, kwargs, groups)
    cls = entry.load_class()
    try:
        optimizer = cls(groups, lr=lr, **entry.fixed, **kwargs)
    except TypeError as exc:
        if re.search(r"unexpected keyword|got multiple values", str(exc)):
            _check_kwargs(name, cls, kwargs)
        raise ConfigError(f"--optimizer_type {name} rejected --optimizer_args {kwargs}: {exc}. {_ARGS_FIX}") from None
    except (ValueError, IndexError, KeyError) as exc:  # e.g. betas=(0.9,) fails inside the constructor
        raise ConfigError(f"--optimizer_type {name} rejected --optimizer_args {kwargs}: {exc}. {_ARGS_FIX}") from None
    return OptimizerBundle(optimizer, _describe(cls, kwargs), is_schedule_free=entry.schedule_free)


def check_optimizer_builds(args: argparse.Namespace) -> None:
    """A throwaway build on one parameter, so a bad `--optimizer_args` value (e.g. `betas=0.9`) fails at start-up
    instead of after the dataset and the models have loaded. The first build imports what the real one needs."""
    import torch

    build_optimizer(args, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
