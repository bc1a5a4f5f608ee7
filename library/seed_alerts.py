"""The seed project's step monitor (`--anima_monitor_*`): GPU memory and loss spikes, logged as the seed logged them
(`gpu/*`, `alert/*` scalars) and warned about in the console; under `--anima_monitor_alert_policy raise`, memory at
the warn ratio stops the run like Ctrl+C does (this step finishes, a state is saved, the resume command printed).

A NaN / inf loss, which the seed's raise policy also stopped for, is --nonfinite_loss's job here (library/nonfinite.py),
and it stops by default before the loss reaches the weights.
"""

from __future__ import annotations

import logging
import math
from argparse import Namespace
from typing import Any

from library.errors import ConfigError

logger = logging.getLogger(__name__)

SEED_WARN_RATIO = 0.95  # the seed's default --anima_monitor_memory_warn_ratio
MB = 1024.0 * 1024.0


def memory_monitored(args: Namespace) -> bool:
    """Explicit --anima_monitor_memory wins; otherwise a memory ratio or the raise policy asks for it."""
    if args.anima_monitor_memory is not None:
        return bool(args.anima_monitor_memory)
    return args.anima_monitor_memory_warn_ratio is not None or args.anima_monitor_alert_policy == "raise"


def validate_seed_alerts(args: Namespace) -> None:
    """Ratios are positive; the raise policy cannot sit with --nonfinite_loss skip (the seed stopped on NaN)."""
    for option in ("anima_monitor_memory_warn_ratio", "anima_monitor_loss_spike_ratio"):
        value = getattr(args, option, None)
        if value is not None and not value > 0:
            raise ConfigError(f"--{option} must be positive (got {value}).")
    policy = getattr(args, "anima_monitor_alert_policy", None)
    nonfinite = getattr(args, "nonfinite_loss", "stop")
    if policy == "raise" and nonfinite == "skip":
        raise ConfigError("--anima_monitor_alert_policy raise stops on a NaN/inf loss, --nonfinite_loss skip skips "
                          "it: keep one of the two.")
    if policy == "warn" and nonfinite == "stop":
        logger.warning("--anima_monitor_alert_policy warn: a NaN/inf loss still stops the run here (--nonfinite_loss "
                       "stop, before it reaches the weights); --nonfinite_loss skip skips such steps instead.")


class SeedAlerts:
    """Called once per optimizer step with its loss; returns the scalars to log and may ask `stop` to stop."""

    def __init__(self, args: Namespace, device: Any, stop: Any) -> None:
        import torch

        self.stop, self.device = stop, device
        self.spike_ratio = args.anima_monitor_loss_spike_ratio
        self.warn_ratio = args.anima_monitor_memory_warn_ratio or SEED_WARN_RATIO
        self.raise_policy = args.anima_monitor_alert_policy == "raise"
        self.memory = memory_monitored(args) and device.type == "cuda" and torch.cuda.is_available()
        if memory_monitored(args) and not self.memory:
            logger.info("--anima_monitor_memory: no CUDA device, so GPU memory is not monitored.")
        self.previous: float | None = None
        self.memory_warned = False

    def step(self, step: int, loss: float) -> dict[str, float]:
        logs = self._loss_logs(step, loss) if self.spike_ratio is not None else {}
        if self.memory:
            logs |= self._memory_logs(step)
        return logs

    def _loss_logs(self, step: int, loss: float) -> dict[str, float]:
        spike = self.previous is not None and self.previous > 0 and loss > self.previous * self.spike_ratio
        if spike:
            logger.warning("loss spike at step %d: %.4g is more than %g times the previous step's %.4g "
                           "(--anima_monitor_loss_spike_ratio).", step, loss, self.spike_ratio, self.previous)
        self.previous = loss if math.isfinite(loss) else None
        return {"alert/loss_spike": float(spike)}

    def _memory_logs(self, step: int) -> dict[str, float]:
        import torch

        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        reserved = torch.cuda.memory_reserved(index) / MB
        ratio = reserved / (torch.cuda.get_device_properties(index).total_memory / MB)
        near = ratio >= self.warn_ratio
        if near and self.raise_policy:
            self.stop.alert_stop(f"--anima_monitor_alert_policy raise (GPU memory {ratio:.0%} reserved, at or above "
                          f"--anima_monitor_memory_warn_ratio {self.warn_ratio:g})")
        elif near and not self.memory_warned:
            logger.warning("step %d: %.0f%% of the GPU's memory is reserved (--anima_monitor_memory_warn_ratio %g); "
                           "an out-of-memory error may follow: see docs/memory_and_speed.md.", step, 100 * ratio,
                           self.warn_ratio)
        self.memory_warned = self.memory_warned or near
        return {"gpu/mem_allocated_mb": torch.cuda.memory_allocated(index) / MB, "gpu/mem_reserved_mb": reserved,
                "gpu/mem_peak_allocated_mb": torch.cuda.max_memory_allocated(index) / MB,
                "gpu/mem_usage_ratio": ratio, "alert/memory_near_limit": float(near)}
