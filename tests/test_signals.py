"""Ctrl+C / SIGTERM on a real training process (issue 7 point 3): finish the step, save, print --resume, exit 130."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest
from _tiny_run import read_losses, tiny_model
from _train_process import TrainProcess, run_to_end
from safetensors.torch import load_file

from library.signals import EXIT_CODE_INTERRUPTED
from library.state import read_train_state

TOTAL = 400


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def start(tiny: Path, out: Path, *extra: str, new_session: bool = False) -> TrainProcess:
    args = ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out),
            "--max_train_steps", str(TOTAL), *extra]
    return TrainProcess(args, new_session=new_session)


def check_stopped_run(process: TrainProcess, out: Path) -> tuple[int, Path, list[str]]:
    """Exit 130, a complete step state + step LoRA; returns (step, state folder, printed resume argv)."""
    code = process.wait()
    assert code == EXIT_CODE_INTERRUPTED, process.stderr[-3000:]
    match = re.search(r"^\s*accelerate launch (.*--resume (\S+))$", process.stdout, re.MULTILINE)
    assert match, process.stdout
    state = Path(match.group(2))
    step = read_train_state(state).current_step
    assert state.name == f"anima_tiny_lora-step{step:08d}-state" and state.parent == out
    assert step >= 1 and (state / "model.safetensors").is_file()
    lora = out / f"anima_tiny_lora-step{step:08d}.safetensors"
    assert load_file(lora) and load_file(state / "model.safetensors")
    assert [s for s, _ in read_losses(out)] == list(range(1, step + 1))
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    return step, state, shlex.split(match.group(1))


def test_ctrl_c_to_the_process_group_saves_and_the_printed_command_resumes(tiny: Path, tmp_path: Path) -> None:
    """Ctrl+C in a terminal reaches the whole process group, DataLoader workers included."""
    out = tmp_path / "out"
    process = start(tiny, out, "--max_data_loader_n_workers", "1", new_session=True)
    process.wait_for_step(1, TOTAL)
    os.killpg(process.proc.pid, signal.SIGINT)
    step, state, argv = check_stopped_run(process, out)
    assert process.stderr.count("SIGINT received: finishing") == 1, "workers must not handle Ctrl+C"
    assert f"Stopped by SIGINT at step {step}" in process.stdout

    resumed = run_to_end([*argv[1:], "--max_train_steps", str(step + 2)])
    assert resumed.proc.returncode == 0, resumed.stderr[-3000:]
    assert argv[0] == "anima_train_network.py" and argv[argv.index("--resume") + 1] == str(state)
    assert [s for s, _ in read_losses(out)] == list(range(1, step + 3))
    assert load_file(out / "anima_tiny_lora.safetensors")


def test_sigterm_saves_and_a_second_signal_while_stopping_corrupts_nothing(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start(tiny, out)
    process.wait_for_step(1, TOTAL)
    process.proc.send_signal(signal.SIGTERM)
    process.wait_for_text("SIGTERM received")
    process.proc.send_signal(signal.SIGINT)
    step, _state, _argv = check_stopped_run(process, out)
    assert f"Stopped by SIGTERM at step {step}" in process.stdout
    assert "SIGINT received again" in process.stderr or "SIGINT received while saving" in process.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
