"""`--fused_backward_pass`: kohya's memory saver for Adafactor. Each parameter is stepped as soon as its gradient is
complete (a post-accumulate-grad hook) and its gradient freed at once, so the gradients of the whole network never
exist together. As in kohya, `--max_grad_norm` then clips each parameter's gradient on its own.

It is refused where the step inside backward would be wrong: another optimizer (kohya's rule), gradient accumulation
(the step would come before the last micro-batch's gradient), several processes (the gradients are averaged across
processes after backward), fp16 mixed precision (the loss scaler unscales gradients at the loop's step), and
--nonfinite_loss skip (the step is taken before the loss can be judged).
"""

from __future__ import annotations

import argparse
import functools
import os
import types
from typing import TYPE_CHECKING, Any

from library.errors import ConfigError

if TYPE_CHECKING:
    import torch

_FIX = "or drop --fused_backward_pass (--gradient_checkpointing and --blocks_to_swap also save memory)"


def validate_fused_backward(args: argparse.Namespace, optimizer_name: str) -> None:
    if not getattr(args, "fused_backward_pass", False):
        return
    problems = {
        f"--optimizer_type {optimizer_name}": optimizer_name != "AdaFactor",
        f"--gradient_accumulation_steps {getattr(args, 'gradient_accumulation_steps', 1)}":
            getattr(args, "gradient_accumulation_steps", 1) > 1,
        f"{os.environ.get('WORLD_SIZE')} processes": int(os.environ.get("WORLD_SIZE", "1")) > 1,
        "--mixed_precision fp16": getattr(args, "mixed_precision", None) == "fp16",
        "--nonfinite_loss skip": getattr(args, "nonfinite_loss", "stop") == "skip",
    }
    if found := [what for what, wrong in problems.items() if wrong]:
        raise ConfigError(f"--fused_backward_pass steps each parameter inside backward, which works only with "
                          f"--optimizer_type AdaFactor, one process, no gradient accumulation, bf16 or fp32 and "
                          f"--nonfinite_loss stop (as kohya); got {', '.join(found)}. Change that, {_FIX}.")


def enable_fused_backward(args: argparse.Namespace, optimizer: torch.optim.Optimizer) -> None:
    """Hook every parameter; the loop's own `optimizer.step()` becomes a no-op (all parameters have stepped)."""
    if not getattr(args, "fused_backward_pass", False):
        return
    step = type(optimizer).step.__get__(optimizer)
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.register_post_accumulate_grad_hook(
                functools.partial(_step_one, optimizer, step, group, args.max_grad_norm))
    # bound, as torch's LR schedulers expect when they wrap it
    optimizer.step = types.MethodType(_stepped_in_backward, optimizer)  # type: ignore[method-assign]


def _step_one(optimizer: torch.optim.Optimizer, step: Any, group: dict[str, Any], max_norm: float | None,
              param: torch.Tensor) -> None:
    """The optimizer's own step, shown only `param` (its group's settings, the current learning rate). A non-finite
    gradient leaves the weight as it was, so --nonfinite_loss stop still stops before a NaN reaches the weights."""
    import torch

    finite, before = torch.isfinite(param.grad).all(), param.detach().clone()
    if max_norm:
        torch.nn.utils.clip_grad_norm_([param], max_norm)
    groups = optimizer.param_groups
    optimizer.param_groups = [{**group, "params": [param]}]
    try:
        step()
    finally:
        optimizer.param_groups = groups
    param.data.copy_(torch.where(finite, param.detach(), before))  # no host sync; the loop's NaN check then stops
    param.grad = None


def _stepped_in_backward(optimizer: torch.optim.Optimizer, closure: Any = None) -> None:
    return None
