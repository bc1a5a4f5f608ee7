"""What an optimizer registry entry is, and what `build_optimizer` hands the trainer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# (lr, kwargs, param_groups) -> (lr, kwargs, param_groups): an entry's chance to apply kohya's rules
Prepare = Callable[[float | None, dict[str, Any], list], tuple[float | None, dict[str, Any], list]]


@dataclass(frozen=True)
class OptimizerEntry:
    """A lazily imported optimizer class plus the kohya rules that go with its name.

    `defaults` are kwargs kohya adds when the user gave none (they show in `ss_optimizer`); `fixed` are always
    passed and not shown (e.g. `nesterov=True`). `eager_check` says the class is cheap to import, so
    `--optimizer_args` keys are checked against its signature at start-up rather than at build time.
    """

    load_class: Callable[[], type]
    package: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    schedule_free: bool = False
    eager_check: bool = True
    prepare: Prepare | None = None


@dataclass
class OptimizerBundle:
    """The optimizer, its `ss_optimizer` description, and the schedule-free train/eval switches.

    Schedule-free optimizers keep two sets of weights; the trainer calls `eval_mode()` before sampling,
    validation and saving (so saved weights are the averaged ones, as in kohya) and `train_mode()` after.
    """

    optimizer: torch.optim.Optimizer
    description: str
    is_schedule_free: bool = False

    def train_mode(self) -> None:
        if self.is_schedule_free:
            self.optimizer.train()

    def eval_mode(self) -> None:
        if self.is_schedule_free:
            self.optimizer.eval()
