"""One option set of bench/gpu_bench.py in a fresh interpreter: the bare loop, then the trainer, on the same
random-weight model (bench/_virtual_model.py). A failure of either (out of memory, a compile error) is recorded as
that row's error instead of ending the run.

    python bench/_gpu_child.py SPEC.json RESULT.json    (written and read by gpu_bench.py)
"""

from __future__ import annotations

import gc
import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for folder in (BENCH.parent, BENCH, BENCH.parent / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402
from _step_child import run_trainer  # noqa: E402
from _step_common import bare_loop, parse_option  # noqa: E402
from _virtual_model import install  # noqa: E402


def measured(run: Any, device: torch.device) -> dict[str, Any]:
    """The run's StepResult as a dict plus the reserved peak, or {"error": the last line of what went wrong}."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        result = asdict(run())
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (any failure is a row, not a crash)
        lines = [line for line in traceback.format_exception_only(type(exc), exc) if line.strip()]
        return {"error": lines[-1].strip()[:300]}
    result["reserved_bytes"] = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else 0
    return result


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    device = torch.device(spec["device"])
    if device.type == "cpu":
        torch.set_num_threads(spec["threads"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    option = parse_option(spec["option"])
    make_dit = install(spec["size"], device, dtype)
    backend = spec["dynamo_backend"]
    results = {
        "bare": measured(lambda: bare_loop(make_dit, option, spec["steps"], spec["warmup"], spec["resolution"],
                                           spec["rank"], device, dtype, backend=backend), device),
        "trainer": measured(lambda: run_trainer(spec, option, device, "bf16" if dtype == torch.bfloat16 else "no",
                                                ("--dynamo_backend", backend)), device),
    }
    Path(result_path).write_text(json.dumps(results), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
