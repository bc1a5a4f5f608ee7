"""What a run stopped by a signal must leave behind, however the signal reached it (directly or via a launcher)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from _tiny_run import read_losses
from safetensors.torch import load_file

from library.state import read_train_state

NAME = "anima_tiny_lora"


def printed_command(stdout: str) -> tuple[list[str], list[str], Path]:
    """The printed resume command, split: (what comes before the script: the launcher and its options, or `python`;
    the script and its arguments; the state folder it resumes)."""
    match = re.search(r"^\s*((?:accelerate launch|python) .*--resume (\S+))$", stdout, re.MULTILINE)
    assert match, stdout[-3000:]
    argv = shlex.split(match.group(1))
    script = next(i for i, item in enumerate(argv) if item.endswith("anima_train_network.py"))
    return argv[:script], argv[script:], Path(match.group(2))


def check_stopped_output(stdout: str, out: Path, processes: int = 1) -> tuple[int, Path, list[str]]:
    """The printed resume command names a complete step state (every process's RNG file too) beside a loadable
    step LoRA, and the loss log covers every step up to it; returns (step, state folder, printed resume argv from
    the script on)."""
    _launch, argv, state = printed_command(stdout)
    step = read_train_state(state).current_step
    assert state.name == f"{NAME}-step{step:08d}-state" and state.parent == out
    assert step >= 1 and (state / "model.safetensors").is_file()
    for part in ("optimizer.bin", "scheduler.bin", *(f"random_states_{rank}.pkl" for rank in range(processes))):
        assert (state / part).is_file(), f"{state} lacks {part}"
    lora = out / f"{NAME}-step{step:08d}.safetensors"
    assert load_file(lora) and load_file(state / "model.safetensors")
    assert [s for s, _ in read_losses(out)] == list(range(1, step + 1))
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    return step, state, argv
