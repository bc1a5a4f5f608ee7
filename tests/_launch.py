"""Run the trainer through `accelerate launch` in N processes (gloo on the CPU), as a multi-GPU user does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from _tiny_run import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(num_processes: int, *trainer_args: str) -> list[str]:
    multi = ["--multi_gpu"] if num_processes > 1 else []
    return [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), str(REPO / "anima_train_network.py"), *trainer_args]


def launch_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(num_processes: int, tiny: Path, output_dir: Path, *extra: str, timeout: float = 300) -> str:
    """One run to its end; returns its log. The exit code alone is not trusted (gloo may abort at interpreter
    exit after every file is written), so the final LoRA file is asserted."""
    command = launch_command(num_processes, "--config_file", str(tiny / "train_args.toml"),
                             "--output_dir", str(output_dir), *extra)
    done = subprocess.run(command, cwd=REPO, env=launch_env(), capture_output=True, text=True, timeout=timeout)
    log = done.stdout + done.stderr
    assert (output_dir / "anima_tiny_lora.safetensors").is_file(), f"{output_dir}: no final LoRA:\n{log[-4000:]}"
    return log
