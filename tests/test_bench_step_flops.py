"""bench/step_flops.py counts what a LoRA step computes (issue 19 point 2), on the tiny widths here (the real 2B
shapes take 4 GB and a minute: figures in bench/RESULTS.md).

Break this catches (run once, it failed): bench/step_flops.py without its CPU attention mapping (FlopCounterMode
then counts no attention at all on the CPU, and the real ratio falls to 0.70).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))


def test_matmuls_and_attention_both_forward_and_backward_are_counted() -> None:
    import step_flops
    from make_tiny_anima import tiny

    total, per_op = step_flops.counted_step(tiny().dit, 64, 4, checkpointing=False)
    forward = per_op["aten._scaled_dot_product_flash_attention_for_cpu"]
    backward = per_op["aten._scaled_dot_product_flash_attention_for_cpu_backward"]
    assert forward > 0 and backward == 2.5 * forward  # torch's formula: flash backward recomputes the scores
    assert per_op["aten.mm"] > 0 and total == sum(per_op.values())
    gc_total, gc_ops = step_flops.counted_step(tiny().dit, 64, 4, checkpointing=True)
    assert gc_ops["aten._scaled_dot_product_flash_attention_for_cpu"] == 2 * forward  # one more forward
    assert gc_total > total
