"""A state remembers how many processes wrote it and how they were launched (issue 17 point 2).

A 2-process run (`accelerate launch --multi_gpu --num_processes 2`, gloo on the CPU) saves a state at step 2; a
1-process resume of it is refused before any model loads, with the command that launches it as it was; that
printed command, run as it is, resumes in 2 processes and ends on the same weights as the uninterrupted run.

Breaks these catch (each run once, each failed):
- library/trainer.py without its `check_process_count` call: the 1-process resume trains (exit 0, not 2);
- library/train_loop.py recording `launcher=[]`: the command in the refusal starts with `python`, not the launch;
- library/state.py `resume_command` ignoring its prefix: the same.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import toml
import torch
from _launch import launch, launch_env
from _tiny_run import REPO, state_dict_of, tiny_model

from library.state import read_train_state

NAME = "anima_tiny_lora"
COMMON = ("--max_train_steps", "4", "--save_state", "--save_every_n_steps", "2")


def batch1_dataset(tiny: Path, work: Path) -> Path:
    config = toml.loads((tiny / "dataset.toml").read_text(encoding="utf-8"))
    config["datasets"][0]["batch_size"] = 1
    path = work / "batch1.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def test_a_two_process_state_refuses_one_process_and_its_printed_launch_resumes_it(tmp_path: Path) -> None:
    tiny = tiny_model(tmp_path / "tiny")
    dataset = batch1_dataset(tiny, tmp_path)
    out = tmp_path / "out"
    launch(2, tiny, out, "--dataset_config", str(dataset), *COMMON)
    uninterrupted = state_dict_of(out / f"{NAME}.safetensors")
    state = out / f"{NAME}-step00000002-state"
    recorded = read_train_state(state)
    assert recorded.num_processes == 2
    assert recorded.launcher[:5] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]

    one = subprocess.run([sys.executable, "anima_train_network.py", "--config_file", str(tiny / "train_args.toml"),
                          "--output_dir", str(out), "--dataset_config", str(dataset), *COMMON, "--resume", str(state)],
                         cwd=REPO, env=launch_env(), capture_output=True, text=True, timeout=120)
    assert one.returncode == 2, one.stderr[-3000:]
    assert "Traceback" not in one.stderr and "latents to encode" not in one.stderr, "it went past the start"
    assert f"--resume {state} was written by 2 process(es), but this run has 1" in one.stderr
    printed = next(line.strip() for line in one.stderr.splitlines() if line.strip().startswith("accelerate launch"))
    argv = shlex.split(printed)
    assert argv[:5] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]
    assert argv[argv.index("--resume") + 1] == str(state)

    (out / f"{NAME}.safetensors").unlink()
    command = [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]  # `accelerate` may not be on PATH
    resumed = subprocess.run(command, cwd=REPO, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    again = state_dict_of(out / f"{NAME}.safetensors")
    assert again.keys() == uninterrupted.keys()
    assert all(torch.equal(again[key], uninterrupted[key]) for key in again), "the resume trained other data"


@pytest.mark.parametrize("saved, current, refused", [(2, 1, True), (1, 2, True), (2, 2, False), (0, 3, False)])
def test_only_the_count_that_wrote_a_state_resumes_it(saved: int, current: int, refused: bool) -> None:
    """0: a state from before the record, which cannot be checked and resumes as before."""
    from library.errors import ConfigError
    from library.state import TrainState, check_process_count

    state = TrainState(1, 2, 2, num_processes=saved, launcher=["accelerate", "launch", "--num_processes", "2"])
    if refused:
        with pytest.raises(ConfigError, match=f"written by {saved} process"):
            check_process_count("s", state, current)
    else:
        check_process_count("s", state, current)


@pytest.mark.parametrize("parent, expected", [
    (["/venv/bin/accelerate", "launch", "--multi_gpu", "--num_processes", "2", "anima_train_network.py", "--x"],
     ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]),
    (["/usr/bin/python3", "-m", "accelerate.commands.launch", "--config_file", "a.yaml", "/r/anima_train_network.py"],
     ["accelerate", "launch", "--config_file", "a.yaml"]),
    (["/venv/bin/python", "/venv/bin/torchrun", "--nproc_per_node", "4", "anima_train_network.py"],
     ["torchrun", "--nproc_per_node", "4"]),
    (["/venv/bin/python", "anima_train_network.py", "--config_file", "t.toml"], None),
    (["bash"], None),
])
def test_the_launch_is_read_from_the_parents_command_line(parent: list[str], expected: list[str] | None) -> None:
    """Caught: options cut at the wrong place (the script name kept, or the first option dropped)."""
    from library.launch_command import launcher_options

    assert launcher_options(parent, "anima_train_network.py") == expected
