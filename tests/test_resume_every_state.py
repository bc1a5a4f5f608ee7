"""Every kind of state records where training stopped and resumes bit-exactly; none trains past --max_train_steps
(issue 16 point 1, issue 17 point 3).

The tiny dataset is 6 batches per epoch. FULL trains 14 steps in one go (epoch 3 stops after 2 of its batches)
with step states every 5 steps and epoch states kept by `--save_last_n_epochs_state 1`; the other kinds of state
come from short runs: the end of a run stopped mid-epoch by --max_train_steps (`--save_state`, and
`--save_state_on_train_end`) and Ctrl+C. Each is resumed to step 14 and must give FULL's losses and weights.

Breaks these tests catch (each was made once and failed them):
- library/train_loop.py `_finish` recording the whole epoch as done (`self.position = (self.num_epochs,
  len(self.loader))` before its save, the old behaviour): the end states' position and their resumes differ;
- library/train_loop.py `_run_epoch` without `self.position = (epoch, index + 1)`: every state records (1, 0);
- library/trainer.py without the `resume.current_step >= args.max_train_steps` stop: a resumed last state
  trains a step N+1, rewrites the LoRA and adds a loss row;
- library/state.py `newest_state` ordering by (step, name) alone: the step state beats the final one;
- library/train_loop.py `_run_epoch` checking the stop request before --max_train_steps: Ctrl+C at the last
  step leaves a step state and no final LoRA.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from _tiny_run import read_losses, state_dict_of, tiny_model, train

from library import state as state_lib
from library.train_loop import TrainLoop

NAME = "anima_tiny_lora"
STEPS = 14
COMMON = ("--learning_rate", "5e-3")
FULL = ("--max_train_steps", str(STEPS), "--save_every_n_steps", "5", "--save_every_n_epochs", "1",
        "--save_last_n_epochs_state", "1", "--save_state")
# kind -> (run that writes it, the state folder, where it must say training stopped: (epoch, step, batches))
KINDS: dict[str, tuple[str, str, tuple[int, int, int]]] = {
    "step": ("full", f"{NAME}-step00000010-state", (2, 10, 4)),
    "epoch_last_n": ("full", f"{NAME}-000002-state", (2, 12, 6)),
    "end_save_state": ("end", f"{NAME}-state", (1, 3, 3)),
    "save_state_on_train_end": ("train_end", f"{NAME}-state", (2, 9, 3)),
    "ctrl_c": ("ctrl_c", f"{NAME}-step00000007-state", (2, 7, 1)),
    "end_of_full_run": ("full", f"{NAME}-state", (3, 14, 2)),
}
STOP_AT = 7


def signal_after_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """A real SIGINT to this process right after `step` is done, through the trainer's own handler."""
    original = TrainLoop._after_step

    def step_then_signal(loop: TrainLoop, epoch: int) -> None:
        original(loop, epoch)
        if loop.global_step == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(TrainLoop, "_after_step", step_then_signal)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    work = tmp_path_factory.mktemp("states")
    out = {"tiny": tiny, "work": work}
    out["full"] = train(tiny, work / "full", *COMMON, *FULL)
    out["end"] = train(tiny, work / "end", *COMMON, "--max_train_steps", "3", "--save_state")
    out["train_end"] = train(tiny, work / "train_end", *COMMON, "--max_train_steps", "9", "--save_state_on_train_end")
    with pytest.MonkeyPatch.context() as monkeypatch, pytest.raises(SystemExit) as stopped:
        signal_after_step(monkeypatch, STOP_AT)
        train(tiny, work / "ctrl_c", *COMMON, "--max_train_steps", str(STEPS))
    assert stopped.value.code == 130
    out["ctrl_c"] = work / "ctrl_c"
    return out


def bit_equal(a: Path, b: Path) -> bool:
    x, y = state_dict_of(a), state_dict_of(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def state_of(runs: dict[str, Path], kind: str) -> Path:
    run, folder, _ = KINDS[kind]
    return runs[run] / folder


def test_each_state_records_where_training_stopped(runs: dict[str, Path]) -> None:
    for kind, (_, _, (epoch, step, batches)) in KINDS.items():
        saved = json.loads((state_of(runs, kind) / state_lib.TRAIN_STATE_FILE).read_text(encoding="utf-8"))
        assert (saved["current_epoch"], saved["current_step"], saved["batches_done_in_epoch"]) == (
            epoch, step, batches), kind
    assert not (runs["full"] / f"{NAME}-000001-state").exists()  # --save_last_n_epochs_state 1 removed it


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "end_of_full_run"])
def test_resume_from_each_kind_of_state_replays_the_full_run(runs: dict[str, Path], tmp_path: Path,
                                                             kind: str) -> None:
    state = state_of(runs, kind)
    step = KINDS[kind][2][1]
    resumed = train(runs["tiny"], tmp_path / "resumed", *COMMON, *FULL, "--resume", str(state))
    full_losses, resumed_losses = read_losses(runs["full"]), read_losses(resumed)
    assert [s for s, _ in resumed_losses] == list(range(step + 1, STEPS + 1))
    assert resumed_losses == full_losses[step:], "per-step losses after resume differ"
    assert bit_equal(runs["full"] / f"{NAME}.safetensors", resumed / f"{NAME}.safetensors"), "final weights differ"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_state_at_max_train_steps_trains_nothing_and_writes_nothing(
        runs: dict[str, Path], tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Resumed into a copy of its own output folder with --max_train_steps at the state's step."""
    run, folder, (_, step, _) = KINDS[kind]
    out = shutil.copytree(runs[run], tmp_path / "out")
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    train(runs["tiny"], out, *COMMON, *FULL[2:], "--max_train_steps", str(step), "--resume", str(out / folder))
    said = capsys.readouterr().out
    assert f"--resume {out / folder}: this state is at step {step}, which already reaches --max_train_steps" in said
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before


def test_ctrl_c_at_the_last_step_finishes_the_run(runs: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping there would leave a state with nothing left to train and no final LoRA."""
    signal_after_step(monkeypatch, 3)
    out = train(runs["tiny"], tmp_path / "out", *COMMON, "--max_train_steps", "3", "--save_state")
    assert bit_equal(out / f"{NAME}.safetensors", runs["end"] / f"{NAME}.safetensors")
    assert not list(out.glob(f"{NAME}-step*"))


def test_the_newest_state_at_equal_steps_is_the_final_one(tmp_path: Path) -> None:
    for name, step in ((state_lib.step_state_name(NAME, 5), 5), (state_lib.step_state_name(NAME, 10), 10),
                       (state_lib.final_state_name(NAME), 10), (state_lib.epoch_state_name(NAME, 1), 6)):
        (tmp_path / name).mkdir()
        (tmp_path / name / state_lib.TRAIN_STATE_FILE).write_text(json.dumps(
            {"current_epoch": 1, "current_step": step, "batches_done_in_epoch": 0}), encoding="utf-8")
    assert state_lib.newest_state(tmp_path, NAME) == tmp_path / state_lib.final_state_name(NAME)
