"""schedulefree optimizers: they replace the LR schedule, so the scheduler must be `constant` without warmup
(warmup is their own `warmup_steps` optimizer argument), and they need train/eval switching."""

from __future__ import annotations

import importlib

from .base import OptimizerEntry


def _entry(class_name: str) -> OptimizerEntry:
    return OptimizerEntry(
        load_class=lambda: getattr(importlib.import_module("schedulefree"), class_name),
        package="schedulefree",
        schedule_free=True,
    )


RADAM_SCHEDULE_FREE = _entry("RAdamScheduleFree")
ADAMW_SCHEDULE_FREE = _entry("AdamWScheduleFree")
SGD_SCHEDULE_FREE = _entry("SGDScheduleFree")
