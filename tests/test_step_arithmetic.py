"""The multi-process and accumulation arithmetic of one optimizer step (issue 14 point 4).

Three runs over the same two 64x64 images, 3 steps of plain SGD (no momentum, no clipping, so the update is
exactly -lr * gradient and any factor in the gradient shows in the weights; Adam would hide it):
X = 2 processes x batch 1 (`accelerate launch --multi_gpu`), Y = 1 process x batch 2, Z = 1 process x batch 1 x
`--gradient_accumulation_steps 2`. Each step sees both images, with the same noise and noise level per image
(library/sample_draws.py), so the mean gradient is the same number in all three.

Mutations this catches (each run once, each failed it):
- library/train_loop.py `_optimizer_step`: `reduction="mean"` -> `reduction="sum"` (X moves twice as far);
- library/train_loop.py `_micro_step`: `acc.backward(loss / grad_accum)` -> `acc.backward(loss)` (Z moves twice as far);
- random draws per batch instead of per sample (Y draws other noise than X and Z).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import toml
import torch
from _launch import launch
from _tiny_run import state_dict_of, tiny_model, train

NAME = "anima_tiny_lora"
STEPS = 3
COMMON = ("--max_train_steps", str(STEPS), "--optimizer_type", "SGD", "--learning_rate", "0.1",
          "--max_grad_norm", "0", "--lr_scheduler", "constant", "--save_every_n_steps", "1")
# Y and Z differ from X only by the order of float sums (a batch of 2 against two batches of 1, an all-reduce
# against an accumulation); measured differences grow to a few 1e-7 by step 3. One step moves the weights by
# several 1e-2 (asserted), so a doubled gradient, a halved one or other noise lands far outside this.
TOLERANCE = 1e-5


def two_image_dataset(tiny: Path, work: Path, batch_size: int) -> Path:
    images = work / "two_images"
    if not images.exists():
        images.mkdir(parents=True)
        for stem in ("00_circle", "03_square"):  # both 64x64: one bucket
            for suffix in (".png", ".txt"):
                shutil.copy(tiny / "dataset" / f"{stem}{suffix}", images / f"{stem}{suffix}")
    config = {"general": {"caption_extension": ".txt"},
              "datasets": [{"resolution": 64, "batch_size": batch_size, "enable_bucket": False,
                            "subsets": [{"image_dir": str(images), "num_repeats": 1}]}]}
    path = work / f"batch{batch_size}.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    work = tmp_path_factory.mktemp("arithmetic")
    one, two = two_image_dataset(tiny, work, 1), two_image_dataset(tiny, work, 2)
    launch(2, tiny, work / "X", "--dataset_config", str(one), *COMMON)
    train(tiny, work / "Y", *COMMON, dataset=two)
    train(tiny, work / "Z", *COMMON, "--gradient_accumulation_steps", "2", dataset=one)
    return {name: {step: state_dict_of(work / name / file) for step, file in files(name)} for name in "XYZ"}


def files(name: str) -> list[tuple[int, str]]:
    return [(step, f"{NAME}-step{step:08d}.safetensors") for step in range(1, STEPS + 1)]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[key].float() - b[key].float()).abs().max()) for key in a)


@pytest.mark.parametrize("other", ["Y", "Z"])
def test_two_processes_equal_one_process_with_the_same_global_batch(runs: dict[str, Any], other: str) -> None:
    for step in range(1, STEPS + 1):
        difference = max_difference(runs["X"][step], runs[other][step])
        assert difference <= TOLERANCE, f"X and {other} differ by {difference:.3g} after step {step}"


def test_the_steps_move_the_weights_far_beyond_the_tolerance(runs: dict[str, Any]) -> None:
    for step in range(2, STEPS + 1):
        assert max_difference(runs["X"][step], runs["X"][step - 1]) > 1000 * TOLERANCE
