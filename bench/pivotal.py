"""Does a trained trigger help? Validation loss on held-out images of a "character" for LoRA alone and LoRA + trigger
rows (pivotal tuning), same steps, same LoRA settings, on the tiny model (issue 22 point 5; reported, not asserted).

The character: red circles on blue of varied size and position, captioned only `orvantis, a shape on a blue
background`, so the trigger is the one word that says which shape. The other three tiny classes train beside them
with their usual captions. A quarter of the circles is held out (`validation_split`) and scored by the trainer's own
validation (fixed sigmas and noise) at the end of each run. Each seed trains both ways; the table gives both losses.

    python bench/pivotal.py                         # appends a table to bench/RESULTS.md
    python bench/pivotal.py --seeds 1 2 --out -     # prints only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import toml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from _report import add_out_option, publish  # noqa: E402
from _tiny_dataset import CLASSES, SIZES, draw  # noqa: E402  (a script folder, not a package)
from make_tiny_anima import make  # noqa: E402

TRIGGER, INIT = "orvantis", "shape"
CHARACTER = f"{TRIGGER}, a shape on a blue background"
VALIDATION = re.compile(r"validation loss at step (\d+) \(\w+\): ([0-9.]+)")


def write_images(folder: Path, classes: list[tuple], per_class: int, seed: int, caption: str | None) -> None:
    """`per_class` images of each class (sizes cycled), each with its class caption or `caption`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for shape, fg, bg, own in classes:
        for index in range(per_class):
            width, height = SIZES[index % len(SIZES)]
            draw(shape, fg, bg, width, height, rng).save(folder / f"{shape}_{index:02d}.png")
            (folder / f"{shape}_{index:02d}.txt").write_text(caption or own, encoding="utf-8")


def dataset_toml(work: Path, per_class: int) -> Path:
    """Two datasets: the character (a quarter held out for validation) and the other classes (all trained)."""
    write_images(work / "character", [CLASSES[0]], per_class, 1, CHARACTER)
    write_images(work / "others", list(CLASSES[1:]), per_class // 2, 2, None)
    common = {"resolution": 64, "batch_size": 2, "enable_bucket": True, "min_bucket_reso": 32,
              "max_bucket_reso": 128, "bucket_reso_steps": 16}
    config = {"general": {"caption_extension": ".txt"}, "datasets": [
        common | {"validation_split": 0.25, "subsets": [{"image_dir": str(work / "character")}]},
        common | {"subsets": [{"image_dir": str(work / "others")}]}]}
    path = work / "dataset.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def final_validation(tiny: Path, dataset: Path, out: Path, seed: int, steps: int, extra: list[str]) -> float:
    """The last validation loss the trainer prints for one run."""
    command = [sys.executable, str(ROOT / "anima_train_network.py"), "--config_file", str(tiny / "train_args.toml"),
               "--dataset_config", str(dataset), "--output_dir", str(out), "--seed", str(seed),
               "--max_train_steps", str(steps), "--learning_rate", "1e-2", "--network_dim", "8", "--network_alpha",
               "8", "--validate_every_n_steps", str(steps), *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    found = VALIDATION.findall(done.stdout)
    if done.returncode or not found:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return float(found[-1][1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one pair of runs per seed")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps of every run")
    parser.add_argument("--per_class", type=int, default=8, help="character images (the others get half as many)")
    parser.add_argument("--pivotal_lr", type=float, default=1e-2, help="the trigger rows' learning rate")
    add_out_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = datetime.datetime.now()
    trigger = ["--pivotal_trigger", TRIGGER, "--pivotal_init_text", INIT, "--pivotal_lr", str(args.pivotal_lr)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pivotal_") as tmp:
        work = Path(tmp)
        tiny = make(work / "tiny", seed=0)
        dataset = dataset_toml(work, args.per_class)
        for seed in args.seeds:
            alone = final_validation(tiny, dataset, work / f"alone{seed}", seed, args.steps, [])
            pivotal = final_validation(tiny, dataset, work / f"pivotal{seed}", seed, args.steps, trigger)
            print(f"seed {seed}: LoRA {alone:.4f}, LoRA + trigger {pivotal:.4f}", flush=True)
            rows.append((seed, alone, pivotal))
    mean = [sum(r[i] for r in rows) / len(rows) for i in (1, 2)]
    table = "\n".join(f"| {seed} | {alone:.4f} | {pivotal:.4f} | {pivotal / alone - 1:+.1%} |"
                      for seed, alone, pivotal in rows)
    report = (f"\n## Pivotal tuning (tiny model, CPU), {started:%Y-%m-%d %H:%M}\n\n"
              f"- Command: `python bench/pivotal.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} "
              f"--per_class {args.per_class} --pivotal_lr {args.pivotal_lr}`\n"
              f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
              f"{platform.python_version()}\n"
              f"- Validation loss (the trainer's, fixed sigmas and noise) on the held-out quarter of the character's "
              f"images, captioned `{CHARACTER}`, after {args.steps} steps; LoRA rank 8, lr 1e-2 both ways, trigger "
              f"rows initialised from `{INIT}`.\n\n"
              "| seed | LoRA | LoRA + trigger | change |\n| ---: | ---: | ---: | ---: |\n" + table
              + f"\n| mean | {mean[0]:.4f} | {mean[1]:.4f} | {mean[1] / mean[0] - 1:+.1%} |\n")
    publish(report, args.out)


if __name__ == "__main__":
    main()
