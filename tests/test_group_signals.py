"""A signal to the whole process group (`timeout`, Slurm, a scheduler, Ctrl+C) saves a resumable state, whatever
else is in the group: DataLoader workers (issue 24 point 1: torch's worker start installs a SIGTERM handler that
dies, so the trainer failed with "DataLoader worker ... is killed by signal: Terminated" and saved nothing) and the
`accelerate launch` process. Each run stops after its first step of a long schedule.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path

import pytest
from _launch import launch_command
from _process_tree import adopting_orphans, kill_tree, trainers_of, wait_adopted
from _stopped_run import check_stopped_output
from _tiny_run import tiny_model
from _train_process import TrainProcess

from library.signals import worker_init_fn, worker_options

TOTAL = 100000
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and prctl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def test_the_worker_init_fn_ignores_both_signals_then_runs_the_one_it_wraps() -> None:
    """Caught: `_ignore_stop_signals` not calling `then` (a user's worker_init_fn lost), or leaving SIGINT out."""
    seen: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker_init_fn(seen.append)(3)
        assert [signal.getsignal(signum) for signum in previous] == [signal.SIG_IGN, signal.SIG_IGN]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert seen == [3]


def _report_mask(queue: object, init: bool) -> None:
    """In a worker: the signals blocked at start, then (after our worker_init_fn) the blocked ones and handlers."""
    started = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    if init:
        worker_init_fn()(0)
    after = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    queue.put(([int(s) for s in started], [int(s) for s in after], signal.getsignal(signal.SIGTERM) == signal.SIG_IGN))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="blocking at fork is fork's")
def test_workers_start_with_the_stop_signals_blocked_until_they_ignore_them() -> None:
    """The moment between torch's worker start (its own dying SIGTERM handler) and our worker_init_fn. Caught:
    `_BlockedStartProcess.start` not blocking (the worker starts with nothing blocked), and `_ignore_stop_signals`
    not unblocking (a held signal would wait for ever, and so would every later one)."""
    context = worker_options(1)["multiprocessing_context"]
    stops = {int(signal.SIGINT), int(signal.SIGTERM)}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    queue = context.SimpleQueue()
    worker = context.Process(target=_report_mask, args=(queue, True))
    worker.start()
    started, after, ignored = queue.get()
    worker.join(timeout=30)
    assert stops <= set(started), "the worker must start with SIGINT and SIGTERM blocked"
    assert not stops & set(after) and ignored, "worker_init_fn must ignore them, then unblock them"
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before, "the parent's mask is restored"
    assert "multiprocessing_context" not in worker_options(0)  # DataLoader refuses one without workers


def trainer_args(tiny: Path, out: Path, workers: int) -> list[str]:
    return ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out), "--max_train_steps",
            str(TOTAL), "--max_data_loader_n_workers", str(workers)]


def check_saved(run: TrainProcess, out: Path, sent: signal.Signals) -> None:
    """One "received" per trainer (a worker that handled it would print a second), the state and the command."""
    assert run.stderr.count(f"{sent.name} received: finishing") == 1, run.stderr[-3000:]
    assert "killed by signal" not in run.stderr and "exited unexpectedly" not in run.stderr, run.stderr[-3000:]
    step, _state, _argv = check_stopped_output(run.stdout, out)
    assert f"Stopped by {sent.name} at step {step}" in run.stdout


@pytest.mark.parametrize(("sent", "workers"), [(signal.SIGTERM, 0), (signal.SIGTERM, 1), (signal.SIGTERM, 2),
                                               (signal.SIGINT, 0), (signal.SIGINT, 2)],
                         ids=["SIGTERM-0", "SIGTERM-1", "SIGTERM-2", "SIGINT-0", "SIGINT-2"])
def test_a_signal_to_the_group_saves_with_any_number_of_workers(tiny: Path, tmp_path: Path, sent: signal.Signals,
                                                                 workers: int) -> None:
    """Caught (SIGTERM with workers): no `worker_init_fn=worker_init_fn()` on the DataLoader in trainer.py, or
    `_ignore_stop_signals` leaving SIGTERM out: the worker dies and the trainer raises instead of saving.
    SIGINT with 1 worker is tests/test_signals.py's Ctrl+C test."""
    out = tmp_path / "out"
    run = TrainProcess(trainer_args(tiny, out, workers), new_session=True)
    try:
        run.wait_for_step(1, TOTAL)
        os.killpg(run.proc.pid, sent)
        assert run.wait() == 128 + sent, run.stderr[-3000:]
    finally:
        kill_tree(run.proc.pid, [])
    check_saved(run, out, sent)


def test_sigterm_to_a_group_with_the_launcher_saves(tiny: Path, tmp_path: Path) -> None:
    """`accelerate launch` (one process) dies on SIGTERM at once; the trainer, signalled by the group and again by
    the launcher's death, saves once with its 2 workers alive. Caught: the same breaks as above."""
    out = tmp_path / "out"
    with adopting_orphans():
        run = TrainProcess([], command=launch_command(1, *trainer_args(tiny, out, 2)), new_session=True)
        trainers: list[int] = []
        try:
            run.wait_for_step(1, TOTAL, timeout=120)
            trainers = trainers_of(run.proc.pid)
            os.killpg(run.proc.pid, signal.SIGTERM)
            assert run.proc.wait(timeout=60) == -signal.SIGTERM, run.stderr[-3000:]
            assert [wait_adopted(pid) for pid in trainers] == [143], run.stderr[-3000:]
            run.wait()
        finally:
            kill_tree(run.proc.pid, trainers)
    check_saved(run, out, signal.SIGTERM)


def test_sigterm_to_a_group_with_a_two_process_launcher_saves(tiny: Path, tmp_path: Path) -> None:
    """torch elastic forwards the signal to both trainers, which also got it from the group, each with a worker.
    Caught: the same breaks as above (a worker's death fails its rank, and elastic ends the other)."""
    out = tmp_path / "out"
    run = TrainProcess([], command=launch_command(2, *trainer_args(tiny, out, 1)), new_session=True)
    try:
        run.wait_for_step(1, TOTAL, timeout=120)
        os.killpg(run.proc.pid, signal.SIGTERM)
        assert run.wait(timeout=60) == 1, run.stderr[-3000:]  # torch's SignalException, re-raised
    finally:
        kill_tree(run.proc.pid, trainers_of(run.proc.pid))
    assert run.stderr.count("SIGTERM received: finishing") == 2, run.stderr[-3000:]
    assert "killed by signal" not in run.stderr and "exited unexpectedly" not in run.stderr, run.stderr[-3000:]
    step, _state, _argv = check_stopped_output(run.stdout, out, processes=2)
    assert f"Stopped by SIGTERM at step {step}" in run.stdout


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
