"""A write that really fails mid-run (issue 17 point 1): the file-size limit (`ulimit -f`, RLIMIT_FSIZE) is lowered
just before one save, so the real writer (safetensors for the LoRA and the state's model.safetensors, torch.save's
zip writer for optimizer.bin) gets EFBIG from the kernel, as it gets ENOSPC from a full disk, and raises its own
error type. Each case must end in our sentence (exit 2: what failed, the free space, the newest complete state
and the command that resumes it), leave no temporary file or `.tmp-partial` folder, and keep every earlier file.

Breaks these catch (each run once, each failed):
- library/saving.py WRITE_ERRORS back to `(OSError,)`: the SafetensorError / RuntimeError escape as tracebacks;
- library/state.py `save_state` without its `rmtree(partial)`: the `-state.tmp-partial` folder stays;
- library/saving.py `write_failure` naming no resume command: the `--resume` assertion fails.
"""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tiny_run import read_losses, tiny_model, train
from safetensors.torch import load_file

from library import train_loop
from library.atomic import TMP_MARK
from library.state import TRAIN_STATE_FILE

NAME = "anima_tiny_lora"
# Sizes on the tiny model with --save_precision fp16 (measured): LoRA 60 KB, state model.safetensors 95 KB (fp32),
# optimizer.bin 244 KB; the loss log, train_state.json and the scheduler stay under 2 KB. Each limit lets every
# file before the target through and stops the target.
LIMITS = {"lora": 30_000, "model.safetensors": 75_000, "optimizer.bin": 150_000}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past `nbytes` fail with EFBIG (SIGXFSZ ignored, so the process is not killed), then the limit goes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def limit_at_step_two(monkeypatch: pytest.MonkeyPatch, method: str, nbytes: int) -> None:
    """Run TrainLoop.<method> under the limit when it is called at step 2 (the real method does the writing)."""
    real = getattr(train_loop.TrainLoop, method)

    def limited(self: train_loop.TrainLoop, *args: Any) -> None:
        if self.global_step != 2:
            return real(self, *args)
        with file_size_limit(nbytes):
            return real(self, *args)

    monkeypatch.setattr(train_loop.TrainLoop, method, limited)


@pytest.mark.parametrize("target", list(LIMITS))
def test_a_write_that_hits_the_limit_stops_with_the_resume_command_and_keeps_earlier_files(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        target: str) -> None:
    limit_at_step_two(monkeypatch, "_save_model" if target == "lora" else "_save_state", LIMITS[target])
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        train(tiny, out, "--max_train_steps", "4", "--save_every_n_steps", "1", "--save_state",
              "--save_precision", "fp16")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    failed = (out / f"{NAME}-step00000002.safetensors" if target == "lora"
              else out / f"{NAME}-step00000002-state")
    step1_state = out / f"{NAME}-step00000001-state"
    assert f"saving {failed} failed at step 2: " in err, err
    assert "MiB free on that disk" in err and f"--resume {step1_state}" in err, err
    assert not [p.name for p in out.iterdir() if TMP_MARK in p.name], "a temporary file or folder was left"
    assert load_file(out / f"{NAME}-step00000001.safetensors")
    assert (step1_state / TRAIN_STATE_FILE).is_file() and load_file(step1_state / "model.safetensors")
    assert not (out / f"{NAME}-step00000002-state").exists()
    assert not (out / f"{NAME}-step00000003.safetensors").exists(), "training went on after the failed save"
    if target != "lora":  # the LoRA of step 2 was written before its state failed, and stays
        assert load_file(out / f"{NAME}-step00000002.safetensors")
    assert [step for step, _ in read_losses(out)][:1] == [1]
