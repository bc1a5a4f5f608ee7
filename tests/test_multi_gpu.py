"""DDP (issue 8): the tiny model trained by 2 gloo processes on the CPU through `accelerate launch --multi_gpu`.

Three runs, shared by the tests: A = 2 processes, dataset batch 1, 8 steps, states every 4 steps, caches on
disk; B = 2 processes resumed from A's step-4 state; C = 1 process (in this process), batch 1 with
`--gradient_accumulation_steps 2`. accelerate gives process p the batches p, p+2, ..., so A's step k averages
the gradients of batches 2k-2 and 2k-1, exactly what C accumulates; each sample's noise seed follows its place
in the epoch (library/sample_draws.py), so both draw the same noise for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import toml
import torch
from _launch import launch as launch_processes
from _tiny_run import read_losses, state_dict_of, tiny_model, train
from safetensors.torch import load_file

NAME = "anima_tiny_lora"
STEPS = 8
COMMON = ("--max_train_steps", str(STEPS), "--cache_latents_to_disk", "--cache_text_encoder_outputs_to_disk")
# A and C must agree to this much. With 2 processes the all-reduce mean (g0 + g1) / 2 and accumulation
# g0 / 2 + g1 / 2 are the same float (halving is exact), so the only freedom left is the order of float sums
# inside the layers; both run one torch thread, and the measured difference is 0.0. One step of training moves
# the weights by ~1e-3 (asserted below), so a run that saw other samples or other noise cannot pass.
TOLERANCE = 1e-6


def launch(tiny: Path, dataset: Path, output_dir: Path, *extra: str) -> str:
    return launch_processes(2, tiny, output_dir, "--dataset_config", str(dataset), *COMMON, *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    work = tmp_path_factory.mktemp("ddp")
    config = toml.loads((tiny / "dataset.toml").read_text(encoding="utf-8"))
    config["datasets"][0]["batch_size"] = 1  # 12 one-image batches: 6 per process, 3 buckets mixed
    dataset = work / "batch1.toml"
    dataset.write_text(toml.dumps(config), encoding="utf-8")
    log_a = launch(tiny, dataset, work / "A", "--save_state", "--save_every_n_steps", "4")
    log_b = launch(tiny, dataset, work / "B", "--resume", str(work / "A" / f"{NAME}-step00000004-state"))
    train(tiny, work / "C", *COMMON, "--gradient_accumulation_steps", "2", dataset=dataset)
    return {"tiny": tiny, "work": work, "log_a": log_a, "log_b": log_b}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[key].float() - b[key].float()).abs().max()) for key in a)


def test_two_processes_train_like_one_process_with_the_same_global_batch(runs: dict[str, Any]) -> None:
    work = runs["work"]
    two = state_dict_of(work / "A" / f"{NAME}.safetensors")
    one = state_dict_of(work / "C" / f"{NAME}.safetensors")
    assert max_difference(two, one) <= TOLERANCE
    halfway = state_dict_of(work / "A" / f"{NAME}-step00000004.safetensors")
    assert max_difference(two, halfway) > 1000 * TOLERANCE  # training moved the weights: the check has teeth


def test_resume_in_two_processes_replays_the_same_losses_and_weights(runs: dict[str, Any]) -> None:
    work = runs["work"]
    first, resumed = read_losses(work / "A"), read_losses(work / "B")
    assert [step for step, _ in resumed] == list(range(5, STEPS + 1))
    assert resumed == first[4:]
    assert max_difference(state_dict_of(work / "A" / f"{NAME}.safetensors"),
                          state_dict_of(work / "B" / f"{NAME}.safetensors")) == 0.0


def test_only_the_main_process_writes_and_every_file_is_whole(runs: dict[str, Any]) -> None:
    folder = runs["work"] / "A"
    states = [f"{NAME}-step00000004-state", f"{NAME}-step00000008-state", f"{NAME}-state"]
    expected = {f"{NAME}-loss.csv", f"{NAME}-loss.png", f"{NAME}.safetensors", f"{NAME}-step00000004.safetensors",
                f"{NAME}-step00000008.safetensors", *states}
    assert {path.name for path in folder.iterdir()} == expected
    assert not [path for path in folder.rglob("*") if ".tmp" in path.name]
    for state in states:  # two ranks really ran, and each wrote its own RNG state into the shared folder
        names = {path.name for path in (folder / state).iterdir()}
        assert {"train_state.json", "model.safetensors", "random_states_0.pkl", "random_states_1.pkl"} <= names
    for path in folder.rglob("*.safetensors"):
        assert load_file(str(path))
    assert runs["log_a"].count("training finished") == 1  # the main process alone reports, saves and logs
    assert [step for step, _ in read_losses(folder)] == list(range(1, STEPS + 1))


def encode_counts(log: str, what: str) -> dict[int, tuple[int, int]]:
    """`<what> to encode: X of Y (process P of 2)` lines -> {P: (X, Y)}."""
    pattern = rf"{what} to encode: (\d+) of (\d+) \(process (\d) of 2\)"
    return {int(p): (int(x), int(y)) for x, y, p in re.findall(pattern, log)}


def test_caching_is_split_across_processes_and_written_once(runs: dict[str, Any]) -> None:
    images = sorted((runs["tiny"] / "dataset").glob("*.png"))
    for what, glob in (("latents", "*_anima_latents.safetensors"), ("captions", "te_*_anima.safetensors")):
        first = encode_counts(runs["log_a"], what)
        assert first.keys() == {0, 1}
        (share0, total), (share1, _) = first[0], first[1]
        assert share0 > 0 and share1 > 0 and share0 + share1 == total  # disjoint halves that cover everything
        files = sorted((runs["tiny"] / "dataset").glob(glob))
        assert len(files) == total
        for path in files:
            assert load_file(str(path))
        assert all(count == 0 for count, _ in encode_counts(runs["log_b"], what).values())  # B reuses them
    latents = [path.name for path in (runs["tiny"] / "dataset").glob("*_anima_latents.safetensors")]
    for image in images:  # one latents file per image (one bucket each, no flip)
        assert sum(name.startswith(image.stem + "_") for name in latents) == 1
