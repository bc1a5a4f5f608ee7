"""bench/step_flops.py counts the trainer's own step (issue 19 point 2) and finds it equal to the analytic minimum
of bench/step_minimum.py but for the flash kernel's named extra; on the tiny widths here (the real 2B shapes take
4 GB and a minute: figures in bench/RESULTS.md).

Breaks these catch (each run once, each failed):
- networks/_lora_module.py's forward building the whole delta per step (`return self.forward_whole_delta(x)`
  as its first line) instead of the bypass: 3 full-width matmuls more per target, the count exceeds the minimum;
- bench/step_flops.py without its CPU attention mapping: no attention counted at all, the count falls below;
- library/anima/conditioning.py's build_context making the adapter's frozen weights trainable
  (`adapter.requires_grad_(True)` as its first line): weight gradients of frozen Linears, the count exceeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))

TOKENS = 8  # the caption's Qwen3 and T5 length: the context is padded to 512 rows whatever it is


def _count_and_minimum(checkpointing: bool, extra: list[str], trained: object):
    import step_flops
    from make_tiny_anima import tiny
    from step_minimum import step_minimum

    config = tiny().dit
    counted = step_flops.counted_step(config, 64, 4, checkpointing, TOKENS, extra=extra)
    return counted, step_minimum(config, 64, trained, checkpointing, TOKENS, TOKENS)


def test_trainer_step_does_the_minimum_but_the_flash_kernels_named_extra() -> None:
    import step_flops
    from step_minimum import Trained

    counted, minimum = _count_and_minimum(False, [], Trained(4))
    forward = counted.per_op[step_flops.FLASH]
    assert forward == minimum.attention_forward > 0
    assert counted.per_op[step_flops.FLASH_BACKWARD] == 2.5 * forward  # torch's formula: scores recomputed
    recompute, kv = step_flops.attention_extra(counted, minimum)
    assert recompute == 0.5 * forward and kv > 0  # the adapter's keys are cached Qwen3 states: no dK, dV needed
    assert counted.total - recompute - kv == minimum.total
    assert set(counted.per_module) == {"LLMAdapter", "AnimaDiT", "network Linears"}


def test_checkpointing_adds_one_forward_of_the_blocks() -> None:
    import step_flops
    from step_minimum import Trained

    plain, _ = _count_and_minimum(False, [], Trained(4))
    counted, minimum = _count_and_minimum(True, [], Trained(4))
    assert counted.total - plain.total == minimum.recompute > 0
    recompute, kv = step_flops.attention_extra(counted, minimum)
    assert counted.total - recompute - kv == minimum.total


def test_an_untrained_adapter_costs_its_forward_only_and_the_context_no_input_gradient() -> None:
    import step_flops
    from step_minimum import Trained

    extra = ["--network_args", "train_llm_adapter=False", "--no-train_norm"]
    counted, minimum = _count_and_minimum(False, extra, Trained(4, llm_adapter=False, norm=False))
    recompute, kv = step_flops.attention_extra(counted, minimum)
    assert counted.total - recompute - kv == minimum.total
    trained, _ = _count_and_minimum(False, [], Trained(4))
    assert trained.per_module["LLMAdapter"] > 2 * counted.per_module["LLMAdapter"]  # forward only here
