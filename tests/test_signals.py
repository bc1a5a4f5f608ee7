"""Ctrl+C / SIGTERM on a real training process (issue 7 point 3): finish the step, save, print --resume, exit
130 after SIGINT and 143 after SIGTERM (128 + the signal, what a shell reports for a process the signal ended)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from _stopped_run import check_stopped_output, printed_command
from _tiny_run import read_losses, tiny_model
from _train_process import TrainProcess, run_to_end
from safetensors.torch import load_file

TOTAL = 400


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def start(tiny: Path, out: Path, *extra: str, new_session: bool = False) -> TrainProcess:
    args = ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out),
            "--max_train_steps", str(TOTAL), *extra]
    return TrainProcess(args, new_session=new_session)


def check_stopped_run(process: TrainProcess, out: Path, code: int) -> tuple[int, Path, list[str]]:
    """Exit `code`, a complete step state + step LoRA; returns (step, state folder, printed resume argv)."""
    assert process.wait() == code, process.stderr[-3000:]
    return check_stopped_output(process.stdout, out)


def test_ctrl_c_to_the_process_group_saves_and_the_printed_command_resumes(tiny: Path, tmp_path: Path) -> None:
    """Ctrl+C in a terminal reaches the whole process group, DataLoader workers included."""
    out = tmp_path / "out"
    process = start(tiny, out, "--max_data_loader_n_workers", "1", new_session=True)
    process.wait_for_step(1, TOTAL)
    os.killpg(process.proc.pid, signal.SIGINT)
    step, state, argv = check_stopped_run(process, out, 130)
    assert process.stderr.count("SIGINT received: finishing") == 1, "workers must not handle Ctrl+C"
    assert f"Stopped by SIGINT at step {step}" in process.stdout

    resumed = run_to_end([*argv[1:], "--max_train_steps", str(step + 2)])
    assert resumed.proc.returncode == 0, resumed.stderr[-3000:]
    assert argv[0] == "anima_train_network.py" and argv[argv.index("--resume") + 1] == str(state)
    assert printed_command(process.stdout)[0] == ["python"], "started by python, so resumed by python"
    assert [s for s, _ in read_losses(out)] == list(range(1, step + 3))
    assert load_file(out / "anima_tiny_lora.safetensors")


def test_sigterm_saves_and_a_second_signal_while_stopping_corrupts_nothing(tiny: Path, tmp_path: Path) -> None:
    """Exit 143, not 130: the status says which signal stopped the run (caught: exiting 130 for every signal)."""
    out = tmp_path / "out"
    process = start(tiny, out)
    process.wait_for_step(1, TOTAL)
    process.proc.send_signal(signal.SIGTERM)
    process.wait_for_text("SIGTERM received")
    process.proc.send_signal(signal.SIGINT)
    step, _state, _argv = check_stopped_run(process, out, 143)
    assert f"Stopped by SIGTERM at step {step}" in process.stdout
    assert "SIGINT received again" in process.stderr or "SIGINT received while saving" in process.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_the_resume_command_is_the_last_thing_a_stopped_run_prints(tiny: Path, tmp_path: Path) -> None:
    """stdout and stderr in one stream, as a terminal shows them: after "Stopped by ..." and the command, no progress
    bar. Caught: the bar left open until SystemExit leaves its `with`, which draws it again below the command."""
    import subprocess
    import time

    out = tmp_path / "out"
    command = [sys.executable, "anima_train_network.py", "--config_file", str(tiny / "train_args.toml"),
               "--output_dir", str(out), "--max_train_steps", str(TOTAL)]
    env = os.environ | {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    seen = b""
    deadline = time.monotonic() + 120
    while f"1/{TOTAL} [".encode() not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    text = (seen + rest).decode("utf-8", errors="replace")
    assert proc.returncode == 143, text[-3000:]
    tail = text[text.index("Stopped by SIGTERM"):]
    assert "--resume" in tail and f"/{TOTAL} [" not in tail, tail
