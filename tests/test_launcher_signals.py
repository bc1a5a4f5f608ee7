"""SIGTERM / SIGINT sent to the `accelerate launch` pid (kill PID, docker stop, systemd, a scheduler) stop a run
the way Ctrl+C does (issue 15): the step finishes, a complete state and step LoRA are saved, the resume command is
printed. The launcher is accelerate's and torch's, so each path is pinned here as it behaves:

- 1 process (accelerate's simple launcher): on SIGTERM it dies at once, on SIGINT 0.25 s after its
  KeyboardInterrupt; the kernel then sends the trainer SIGTERM (library/launcher_death.py), which saves after the
  launcher is gone and exits 143. This process adopts the orphan (tests/_process_tree.py) to read that status.
- 2 processes (torch elastic): the launcher forwards the signal to every worker, waits for them
  (TORCH_ELASTIC_SHUTDOWN_TIMEOUT, 30 s) and exits 1 with a SignalException traceback.

The launcher runs in a new session so only it gets the signal (a terminal's Ctrl+C reaches the whole group:
tests/test_signals.py).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
from _launch import launch_command
from _process_tree import adopting_orphans, kill_tree, rank_of, trainers_of, wait_adopted
from _stopped_run import check_stopped_output, printed_command
from _tiny_run import tiny_model
from _train_process import TrainProcess

TOTAL = 400
START_TIMEOUT = 120.0  # two trainers starting on two shared cores
STOP_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def start(processes: int, tiny: Path, out: Path) -> tuple[TrainProcess, list[int]]:
    """`accelerate launch` in its own session, past its first step; returns it and its trainers' pids."""
    command = launch_command(processes, "--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out),
                             "--max_train_steps", str(TOTAL))
    run = TrainProcess([], command=command, new_session=True)
    try:
        run.wait_for_step(1, TOTAL, timeout=START_TIMEOUT)
        trainers = trainers_of(run.proc.pid)
        assert len(trainers) == processes, trainers
    except BaseException:
        kill_tree(run.proc.pid, trainers_of(run.proc.pid))
        raise
    return run, trainers


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_a_one_process_launcher_stops_the_trainer_it_leaves(tiny: Path, tmp_path: Path,
                                                                         sent: signal.Signals) -> None:
    """The launcher dies either way; the trainer stops because of that. Caught: no prctl call in
    follow_launcher (the orphan trains to the end, exits 0, prints no resume command), exiting 130 for SIGTERM."""
    out = tmp_path / "out"
    with adopting_orphans():
        run, trainers = start(1, tiny, out)
        try:
            os.kill(run.proc.pid, sent)
            assert run.proc.wait(timeout=STOP_TIMEOUT) == -sent, run.stderr[-3000:]
            assert wait_adopted(trainers[0], STOP_TIMEOUT) == 143, run.stderr[-3000:]
            run.wait()
        finally:
            kill_tree(run.proc.pid, trainers)
    assert "SIGTERM received: finishing" in run.stderr
    step, _state, _argv = check_stopped_output(run.stdout, out)
    assert f"Stopped by SIGTERM at step {step}" in run.stdout


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_a_two_process_launcher_reaches_both_workers(tiny: Path, tmp_path: Path,
                                                                 sent: signal.Signals) -> None:
    """torch elastic forwards the signal it got. Caught: that signal missing from signals.STOP_SIGNALS (the
    workers die on the spot and save nothing). The workers' exit statuses are not seen: elastic reaps them."""
    out = tmp_path / "out"
    run, trainers = start(2, tiny, out)
    try:
        os.kill(run.proc.pid, sent)
        assert run.wait(timeout=STOP_TIMEOUT) == 1, run.stderr[-3000:]  # torch's SignalException, re-raised
    finally:
        kill_tree(run.proc.pid, trainers)
    assert f"got signal: {int(sent)}" in run.stderr
    assert run.stderr.count(f"{sent.name} received: finishing") == 2, run.stderr[-3000:]
    assert "forcefully exiting" not in run.stderr  # both were done before elastic's SIGKILL deadline
    step, _state, _argv = check_stopped_output(run.stdout, out, processes=2)
    assert f"Stopped by {sent.name} at step {step}" in run.stdout
    # the printed command launches as this run was launched (caught: rebuilt from the trainer's argv alone)
    assert printed_command(run.stdout)[0][:5] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2"]


def test_two_workers_stop_and_exit_143_when_the_launcher_is_killed(tiny: Path, tmp_path: Path) -> None:
    """SIGKILL (the OOM killer, `docker kill`) forwards nothing; the kernel's SIGTERM still reaches each worker.
    Caught: no prctl call (the workers train on alone and exit 0), and exiting 130 for SIGTERM."""
    out = tmp_path / "out"
    with adopting_orphans():
        run, trainers = start(2, tiny, out)
        try:
            os.kill(run.proc.pid, signal.SIGKILL)
            assert run.proc.wait(timeout=STOP_TIMEOUT) == -signal.SIGKILL
            assert [wait_adopted(pid, STOP_TIMEOUT) for pid in trainers] == [143, 143], run.stderr[-3000:]
            run.wait()
        finally:
            kill_tree(run.proc.pid, trainers)
    assert run.stderr.count("SIGTERM received: finishing") == 2, run.stderr[-3000:]
    step, _state, _argv = check_stopped_output(run.stdout, out, processes=2)
    assert f"Stopped by SIGTERM at step {step}" in run.stdout


def test_a_signal_to_one_worker_stops_every_rank_at_the_same_step(tiny: Path, tmp_path: Path) -> None:
    """Only rank 1 is signalled; rank 0 learns it at the step's all-gather, saves its part and prints the command.
    Elastic reports each failed worker's exit status. Caught: no all-gather of the signals (rank 0 trains on,
    rank 1 waits for it in a collective: time-out), exiting 130 for SIGTERM, and a stopped worker left to
    interpreter shutdown instead of os._exit (2 runs in 3: elastic, seeing rank 1 gone, SIGTERMs rank 0 while it
    shuts down: -15)."""
    out = tmp_path / "out"
    run, trainers = start(2, tiny, out)
    try:
        rank1 = next(pid for pid in trainers if rank_of(pid) == 1)
        os.kill(rank1, signal.SIGTERM)
        assert run.wait(timeout=STOP_TIMEOUT) == 1, run.stderr[-3000:]  # torch's ChildFailedError
    finally:
        kill_tree(run.proc.pid, trainers)
    assert run.stderr.count("SIGTERM received: finishing") == 1
    statuses = re.findall(r"exitcode\s*:\s*(-?\d+)", run.stderr)
    assert statuses and set(statuses) == {"143"}, run.stderr[-3000:]
    step, _state, _argv = check_stopped_output(run.stdout, out, processes=2)
    assert f"Stopped by SIGTERM at step {step}" in run.stdout
