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


PROBE = Path(__file__).resolve().parent / "launch_probe"


def launch_env(probe_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if probe_dir is not None:  # tests/launch_probe/sitecustomize.py records process-group teardowns there
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROBE), env.get("PYTHONPATH")]))
        env["ANIMA_TEST_PROBE_DIR"] = str(probe_dir)
    return env


def launch(num_processes: int, tiny: Path, output_dir: Path, *extra: str, timeout: float = 300) -> str:
    """One run to its end; returns its log. It must exit 0 with the final LoRA written, and no worker may have
    destroyed its process group (library/signals.py `end_run`: that teardown can hang a worker after training).
    Breaking `end_run` back to `accelerator.end_training()` fails every multi-process test through this check."""
    command = launch_command(num_processes, "--config_file", str(tiny / "train_args.toml"),
                             "--output_dir", str(output_dir), *extra)
    probe = output_dir.with_name(output_dir.name + ".probe")
    probe.mkdir(parents=True)
    done = subprocess.run(command, cwd=REPO, env=launch_env(probe), capture_output=True, text=True,
                          timeout=timeout)
    log = done.stdout + done.stderr
    assert (output_dir / "anima_tiny_lora.safetensors").is_file(), f"{output_dir}: no final LoRA:\n{log[-4000:]}"
    assert done.returncode == 0, f"exit {done.returncode} after the final LoRA was written:\n{log[-4000:]}"
    assert not any(probe.iterdir()), f"a worker destroyed its process group: {sorted(probe.iterdir())}"
    return log
