"""transformers' Adafactor with kohya's rules.

kohya turns `relative_step` on unless the user set it (and forces it on with `warmup_init=True`). With a relative
step Adafactor computes its own learning rate, so the base LR and per-group LRs are dropped and the LR scheduler
becomes transformers' `AdafactorSchedule` (which only reports that LR); `build_lr_scheduler` does that swap.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import OptimizerEntry

logger = logging.getLogger(__name__)


def _load() -> type:
    from transformers.optimization import Adafactor

    return Adafactor


def uses_relative_step(kwargs: dict[str, Any]) -> bool:
    """kohya's rule: relative_step defaults to True, and warmup_init=True implies it."""
    return bool(kwargs.get("relative_step", True)) or bool(kwargs.get("warmup_init", False))


def _prepare(lr: float | None, kwargs: dict[str, Any], groups: list) -> tuple[float | None, dict[str, Any], list]:
    kwargs = {**kwargs, "relative_step": uses_relative_step(kwargs)}
    if not kwargs["relative_step"]:
        return lr, kwargs, groups
    logger.info("Adafactor relative_step=True: --learning_rate %s is only the reported initial LR", lr)
    stripped = []
    for group in groups:
        if isinstance(group, dict) and "lr" in group:
            logger.warning(
                "Adafactor relative_step=True ignores the per-group learning rates (unet_lr/text_encoder_lr)"
            )
            group = {key: value for key, value in group.items() if key != "lr"}
        stripped.append(group)
    return None, kwargs, stripped


ADAFACTOR = OptimizerEntry(load_class=_load, package="transformers", eager_check=False, prepare=_prepare)
