"""Start-up cost: CPU seconds of `anima_train_network.py --help` and of option errors, each as a ratio to
`python -c "import torch"`, measured in one run (issue 24 point 2; goal: at most 0.5).

Why: an answer to `--help` or to a mistake should come in well under a second, before torch and the model libraries
load. CPU time (user + system of the child, from `resource.getrusage(RUSAGE_CHILDREN)`) is steadier than wall time
on a shared machine; each command runs `--repeats` times round-robin and the fastest run counts.

    python bench/startup.py                 # appends a table to bench/RESULTS.md
    python bench/startup.py --out -         # prints only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import add_out_option, publish

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "anima_train_network.py")


def cases(work: Path) -> dict[str, list[str]]:
    """name -> argv; the first is the reference. The TOML case is a train-args file with one bad value."""
    toml = work / "bad_value.toml"
    toml.write_text('loss_type = "L3"\n', encoding="utf-8")
    python = sys.executable
    return {
        'python -c "import torch"': [python, "-c", "import torch"],
        "--help": [python, SCRIPT, "--help"],
        "--learning_rat 1e-2 (unknown option)": [python, SCRIPT, "--learning_rat", "1e-2"],
        "--config_file with loss_type = \"L3\"": [python, SCRIPT, "--config_file", str(toml)],
        "--optimizer_type adamww (looked up in torch.optim)": [python, SCRIPT, "--optimizer_type", "adamww"],
    }


def cpu_seconds(argv: list[str]) -> tuple[float, int]:
    """(user + system CPU seconds, exit code) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command, round-robin; the fastest counts")
    add_out_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.datetime.now()
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        commands = cases(Path(tmp))
        best: dict[str, tuple[float, int]] = {}
        for round_index in range(args.repeats):
            for name, command in commands.items():
                seconds, code = cpu_seconds(command)
                print(f"round {round_index + 1} {name}: {seconds:.2f} CPU-s (exit {code})", flush=True)
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, code)
    reference = best[next(iter(commands))][0]
    rows = "\n".join(f"| `{name}` | {code} | {seconds:.2f} | {seconds / reference:.2f} |"
                     for name, (seconds, code) in best.items())
    report = (f"\n## Start-up, {started:%Y-%m-%d %H:%M}\n\n"
              f"- Command: `python bench/startup.py --repeats {args.repeats}`\n"
              f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} at start; Python {platform.python_version()}\n"
              f"- CPU seconds (user + system) of each command, fastest of {args.repeats}; ratio to the first. "
              f"Goal for `--help` and option errors: at most 0.5.\n\n"
              "| command | exit | CPU-s | ratio to import torch |\n| --- | ---: | ---: | ---: |\n" + rows + "\n")
    publish(report, args.out)


if __name__ == "__main__":
    main()
