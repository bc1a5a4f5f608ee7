"""bench/gpu.sh cannot rot (issue 19 point 1): its --dry mode runs the same script (option processes, the
random-weight model built in memory, the trainer and the bare loop, the table) on the CPU with the tiny model.

Breaks these catch (each run once, each failed): bench/_virtual_model.py not rebinding `inspect_dit_file` (the
trainer refuses --blocks_to_swap 2 against the tiny file's 2 blocks: an error row, exit 1); a row's failure
crashing the run instead of becoming a row (no table).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))


def test_the_dry_run_measures_every_row_and_appends_the_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# earlier results\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_bench.py"), "--dry", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# earlier results\n") and "## GPU bench (dry run)" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["none", "fp8_gc_swap2", "gc_compile"]
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[4] == cells[8] == "yes" and cells[-1] == "", row  # finite losses, no error


def test_the_peak_comes_from_the_gpu_name_or_the_option() -> None:
    import gpu_bench

    assert gpu_bench.peak_tflops("NVIDIA H200", None) == 989.0
    assert gpu_bench.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert gpu_bench.peak_tflops("NVIDIA GeForce RTX 4090", None) is None
    assert gpu_bench.peak_tflops("NVIDIA GeForce RTX 4090", 165.2) == 165.2


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_the_real_run_is_one_error_line() -> None:
    import gpu_bench

    with pytest.raises(SystemExit, match="^error: no CUDA device here"):
        gpu_bench.parse_args([])
