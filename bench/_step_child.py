"""One measurement of `train_step.py` in a child process: the bare loop, or the real trainer on a one-image dataset.

Why a child each: a process's peak (CUDA allocator or max RSS) only grows, and start-up state (compiled graphs,
pinned memory, accelerate's singletons) must not carry from one option to the next. The trainer is timed from
outside its code: a global optimizer step hook (`torch.optim.optimizer.register_optimizer_step_post_hook`, public
PyTorch API) stamps the end of every optimizer step, so the interval between two stamps is one whole loop
iteration (data loading, forward, backward, step, logging, the stop check); start-up, caching and the final save
fall outside the timed steps.

    python bench/_step_child.py SPEC.json RESULT.json     # SPEC: mode, option, model_dir, steps, ... (see run_child)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import toml
import torch
from PIL import Image
from torch.optim.optimizer import register_optimizer_step_post_hook

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for folder in (ROOT, BENCH, ROOT / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from _step_common import (  # noqa: E402
    LEARNING_RATE,
    Option,
    StepResult,
    bare_loop,
    median_step,
    parse_option,
    peak_memory,
    step_clock,
    sync,
)

from library.anima.dit_header import inspect_dit_file  # noqa: E402
from library.anima.loading import load_anima_dit  # noqa: E402
from library.anima.model import AnimaConfig  # noqa: E402

CAPTION = "a red circle on a blue background"


def make_model(folder: Path) -> Path:
    """The tiny model folder (tools/make_tiny_anima.py), written once."""
    from make_tiny_anima import make

    return make(folder, seed=0, size_name="tiny")


def model_paths(model_dir: Path) -> dict[str, str]:
    """The file paths from the folder's train_args.toml; its other settings (e.g. checkpointing) are not used."""
    config = toml.load(model_dir / "train_args.toml")
    keys = ("pretrained_model_name_or_path", "qwen3", "vae", "t5_tokenizer_path")
    return {key: config[key] for key in keys}


def dit_config(model_dir: Path) -> AnimaConfig:
    return inspect_dit_file(model_paths(model_dir)["pretrained_model_name_or_path"]).config


def run_child(mode: str, option: Option, model_dir: Path, work: Path, args: argparse.Namespace) -> StepResult:
    """Run one measurement in a fresh interpreter; its log is shown only when it fails."""
    work.mkdir(parents=True, exist_ok=True)
    spec = {"mode": mode, "option": option.name, "model_dir": str(model_dir), "work": str(work),
            "steps": args.steps, "warmup": args.warmup, "resolution": args.resolution, "rank": args.rank,
            "device": args.device, "threads": args.threads}
    (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    log = work / "log.txt"
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.call([sys.executable, __file__, str(work / "spec.json"), str(work / "result.json")],
                               stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    if code:
        raise SystemExit(f"{mode} run of {option.name} failed (exit {code}):\n{log.read_text()[-4000:]}")
    return StepResult(**json.loads((work / "result.json").read_text(encoding="utf-8")))


def dataset_config(work: Path, resolution: int, steps: int) -> Path:
    """One R x R image repeated `steps` times: the whole run is one epoch, as in a real dataset of that size."""
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (resolution, resolution), (30, 60, 200)).save(images / "one.png")
    (images / "one.txt").write_text(CAPTION, encoding="utf-8")
    config = {"general": {"caption_extension": ".txt"},
              "datasets": [{"resolution": resolution, "batch_size": 1, "enable_bucket": False,
                            "subsets": [{"image_dir": str(images), "num_repeats": steps}]}]}
    path = work / "dataset.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def trainer_argv(spec: dict, option: Option, dtype_flag: str, extra: tuple[str, ...] = ()) -> list[str]:
    work, model_dir = Path(spec["work"]), Path(spec["model_dir"])
    argv = [item for key, value in model_paths(model_dir).items() for item in (f"--{key}", value)]
    return argv + [
        "--dataset_config", str(dataset_config(work, spec["resolution"], spec["steps"])),
        "--output_dir", str(work / "output"), "--output_name", "bench",
        "--network_module", "networks.lora_anima", "--network_dim", str(spec["rank"]),
        "--network_alpha", str(float(spec["rank"])), "--optimizer_type", "AdamW",
        "--learning_rate", str(LEARNING_RATE), "--lr_scheduler", "constant",
        "--max_train_steps", str(spec["steps"]), "--mixed_precision", dtype_flag, "--seed", "0",
        "--timestep_sampling", "sigmoid", "--cache_latents", "--cache_text_encoder_outputs",
        "--max_data_loader_n_workers", "0", *option.trainer_flags(), *extra,
    ]


def run_trainer(spec: dict, option: Option, device: torch.device, dtype_flag: str,
                extra: tuple[str, ...] = ()) -> StepResult:
    from anima_train_network import main as train_main

    stamps: list[float] = []
    clock = step_clock(device)

    def stamp(*_: object) -> None:
        sync(device)
        stamps.append(clock())

    handle = register_optimizer_step_post_hook(stamp)
    try:
        train_main(trainer_argv(spec, option, dtype_flag, extra))
    finally:
        handle.remove()
    if len(stamps) != spec["steps"]:
        raise SystemExit(f"the trainer made {len(stamps)} optimizer steps, expected {spec['steps']}")
    losses_csv = Path(spec["work"]) / "output" / "bench-loss.csv"
    losses = [float(line.split(",")[1]) for line in losses_csv.read_text().splitlines()[1:]]
    # the first stamp ends step 0, so it stands in for the start stamp: step 0 is never timed (warm-up >= 1)
    return StepResult(option.name, median_step(stamps, spec["warmup"] - 1), *peak_memory(device), losses)


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    option, device = parse_option(spec["option"]), torch.device(spec["device"])
    if device.type == "cpu":
        torch.set_num_threads(spec["threads"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if spec["mode"] == "bare":
        path = model_paths(Path(spec["model_dir"]))["pretrained_model_name_or_path"]
        result = bare_loop(lambda: load_anima_dit(path, dtype=dtype, device="cpu"), option, spec["steps"],
                           spec["warmup"], spec["resolution"], spec["rank"], device, dtype)
    else:
        result = run_trainer(spec, option, device, "bf16" if dtype == torch.bfloat16 else "no")
    Path(result_path).write_text(json.dumps(asdict(result)), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
