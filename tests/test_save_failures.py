"""Disk full / unwritable output (issue 7 point 6): fail before training with a clear message, and a save
that fails mid-run stops training, keeps the previous good files and says how to resume."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import pytest
from _tiny_run import read_losses, tiny_model, train
from safetensors.torch import load_file

from library import atomic, saving
from library.atomic import TMP_MARK
from library.state import TRAIN_STATE_FILE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def fails_before_training(tiny: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        train(tiny, out, "--max_train_steps", "2")
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "steps" not in captured.err and "latents to encode" not in captured.err, "training started"
    return captured.err


def test_unwritable_output_dir_fails_before_training(tiny: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"  # tests run as root, where chmod does not stop writes; a file does
    blocker.write_text("x")
    err = fails_before_training(tiny, blocker / "out", capsys)
    assert f"--output_dir {blocker / 'out'}: cannot write there" in err


def test_full_disk_fails_before_training(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(saving.shutil, "disk_usage",
                        lambda path: real(path)._replace(free=2**20))
    err = fails_before_training(tiny, tmp_path / "out", capsys)
    assert "only 1 MiB free on that disk" in err and "Free some space" in err


def test_failed_save_mid_run_keeps_previous_files_and_names_the_resume(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_save = atomic.save_file

    def save_then_fill_disk(tensors: dict[str, Any], path: str, metadata: dict[str, str] | None = None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # step 2's LoRA: half a file, then the disk is full
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(atomic, "save_file", save_then_fill_disk)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        train(tiny, out, "--max_train_steps", "4", "--save_every_n_steps", "1", "--save_state")
    assert info.value.code == 2
    err = capsys.readouterr().err
    step1_state = out / "anima_tiny_lora-step00000001-state"
    assert f"saving {out / 'anima_tiny_lora-step00000002.safetensors'} failed at step 2: No space left" in err
    assert f"--resume {step1_state}" in err
    assert load_file(out / "anima_tiny_lora-step00000001.safetensors")
    assert (step1_state / TRAIN_STATE_FILE).is_file() and load_file(step1_state / "model.safetensors")
    assert not (out / "anima_tiny_lora-step00000002.safetensors").exists()
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]
    assert [step for step, _ in read_losses(out)] == [1]
