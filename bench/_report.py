"""Where every bench's Markdown report goes: printed, and appended to bench/RESULTS.md unless `--out -`.

Kept free of torch so the start-up bench can use it without importing what it measures."""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def add_out_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(RESULTS),
                        help="Markdown file the results are appended to; '-' prints only")


def publish(report: str, out: str) -> None:
    """Print a bench's report and append it to `out` (a Markdown file; '-' prints only)."""
    print(report)
    if out != "-":
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(report)
