"""SIGKILL during saves (issue 7 point 4): every final-named file loads, every final-named state is complete,
`.tmp-` leftovers are refused by --resume, and the newest complete state resumes.

The kill points are deterministic: `ANIMA_TEST_KILL_AT=<label>:<n>` (library.atomic.maybe_crash) makes the
trainer SIGKILL itself the n-th time it reaches a point between writing and renaming. With
`--save_every_n_steps 1 --save_state`, each step passes "file-before-rename" three times (the LoRA file, the
loss CSV, train_state.json inside the state folder) and each state label once. The runs form one chain in one
output folder: each resumes from the newest complete state the previous kill left, leftovers included.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from _tiny_run import read_losses, tiny_model
from _train_process import run_to_end
from safetensors.torch import load_file

from library.atomic import KILL_ENV, TMP_MARK
from library.errors import ConfigError
from library.state import TRAIN_STATE_FILE, newest_state, read_train_state

# (kill point counted within that run, newest complete state the kill leaves); each run resumes the previous
CHAIN = [
    ("file-before-rename:4", 1),  # step 2's LoRA file written, not renamed
    ("state-after-accelerate:2", 2),  # step 3's state folder half written (no train_state.json)
    ("state-before-rename:2", 3),  # step 4's state folder complete but still under its .tmp- name
    ("file-before-rename:5", 4),  # step 5's loss CSV written, not renamed
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def train_args(tiny: Path, out: Path, steps: int) -> list[str]:
    return ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out), "--max_train_steps",
            str(steps), "--save_every_n_steps", "1", "--save_state"]


def check_after_kill(out: Path, expected_newest: int) -> Path:
    """Every file under a final name is whole; unfinished saves are refused; returns the newest state."""
    final_named = [p for p in out.rglob("*") if TMP_MARK not in str(p.relative_to(out))]
    for path in (p for p in final_named if p.suffix == ".safetensors"):
        assert load_file(path), path
    states = [p for p in final_named if p.is_dir() and p.name.endswith("-state")]
    assert states and all((p / TRAIN_STATE_FILE).is_file() for p in states), states
    for leftover in (p for p in out.iterdir() if TMP_MARK in p.name and p.is_dir()):
        with pytest.raises(ConfigError, match="unfinished save"):
            read_train_state(leftover)
    newest = newest_state(out, "anima_tiny_lora")
    assert newest is not None and read_train_state(newest).current_step == expected_newest
    return newest


def test_kills_during_saves_leave_complete_files_and_the_newest_state_resumes(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    resume: list[str] = []
    for kill_at, newest_step in CHAIN:
        before = {p.name for p in out.iterdir() if TMP_MARK in p.name} if out.exists() else set()
        killed = run_to_end([*train_args(tiny, out, 12), *resume], env={KILL_ENV: kill_at})
        assert killed.proc.returncode == -signal.SIGKILL, f"{kill_at}: {killed.stderr[-3000:]}"
        assert {p.name for p in out.iterdir() if TMP_MARK in p.name} - before, f"{kill_at} was not inside a save"
        resume = ["--resume", str(check_after_kill(out, newest_step))]

    final = run_to_end([*train_args(tiny, out, 6), *resume])
    assert final.proc.returncode == 0, final.stderr[-3000:]
    assert f"resumed from {resume[1]} at step 4" in final.stderr
    assert [step for step, _ in read_losses(out)] == list(range(1, 7))
    assert load_file(out / "anima_tiny_lora.safetensors")
