"""Tell what each model file or folder is and whether Anima training will load it, reading headers only.

    python tools/check_anima_models.py anima-base-v1.0.safetensors qwen_3_06b_base.safetensors \\
        qwen_image_vae.safetensors my_lora.safetensors

Exit code 0 when every path loads, 1 otherwise; each failure comes with a one-line fix.
"""

from __future__ import annotations

import argparse
import sys

import _bootstrap  # noqa: F401  (the repository root on sys.path, before any project import)

from library.anima.detect import cross_check, identify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="model files (.safetensors) or folders (HF Qwen3, diffusers VAE, T5 tokenizer)",
    )
    args = parser.parse_args(argv)
    findings = [identify(path) for path in args.paths]
    for finding in findings:
        verdict = "loads" if finding.loads else "will NOT load"
        print(f"{finding.path}: {finding.summary} -> {verdict}")
        if finding.fix:
            print(f"    fix: {finding.fix}")
    problems = cross_check(findings)
    for problem in problems:
        print(f"together: {problem}")
    return 0 if all(f.loads for f in findings) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
