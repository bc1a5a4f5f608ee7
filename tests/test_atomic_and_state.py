"""Crash-safe writes and kohya-named state folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from library import state as state_lib
from library.atomic import TMP_MARK, atomic_dir, atomic_path, save_safetensors_atomic, write_text_atomic
from library.errors import ConfigError
from library.saving import Retention, epoch_file_name, final_file_name, probe_output_dir, step_file_name


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "lora.safetensors"
    save_safetensors_atomic({"a": torch.ones(2)}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")
    assert torch.equal(load_file(target)["a"], torch.ones(2))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_MARK)]


def test_atomic_dir_is_complete_or_absent(tmp_path: Path) -> None:
    final = tmp_path / "run-state"
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"x")
        raise KeyboardInterrupt
    assert not final.exists()
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_dir(final) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_kohya_names() -> None:
    assert state_lib.step_state_name("mylora", 500) == "mylora-step00000500-state"
    assert state_lib.epoch_state_name("mylora", 2) == "mylora-000002-state"
    assert state_lib.final_state_name("mylora") == "mylora-state"
    assert step_file_name("m", 10) == "m-step00000010.safetensors"
    assert epoch_file_name("m", 3) == "m-000003.safetensors"
    assert final_file_name("m") == "m.safetensors"


def test_read_train_state_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        state_lib.read_train_state(tmp_path / "missing")
    (tmp_path / "half").mkdir()
    with pytest.raises(ConfigError, match="train_state.json is missing"):
        state_lib.read_train_state(tmp_path / "half")
    write_text_atomic(tmp_path / "half" / "train_state.json",
                      json.dumps({"current_epoch": 2, "current_step": 7, "batches_done_in_epoch": 3}))
    st = state_lib.read_train_state(tmp_path / "half")
    assert (st.current_epoch, st.current_step, st.batches_done_in_epoch) == (2, 7, 3)


def test_identity_mismatch_names_each_difference() -> None:
    with pytest.raises(ConfigError) as info:
        state_lib.check_identity("s", {"network_dim": 4, "network_module": "networks.lora_anima"},
                                 {"network_dim": 8, "network_module": "networks.lora_anima"})
    assert "network_dim: state has 4, this run has 8" in str(info.value)
    state_lib.check_identity("s", {"network_dim": 4}, {"network_dim": 4})


def test_probe_rejects_an_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write there"):
        probe_output_dir(str(blocker / "out"))
    assert probe_output_dir(str(tmp_path / "out")).is_dir()


def test_retention_removes_old_step_files(tmp_path: Path) -> None:
    class Args:
        save_every_n_steps, save_last_n_steps, save_last_n_steps_state = 2, 2, None
        save_every_n_epochs = save_last_n_epochs = save_last_n_epochs_state = None

    for step in (2, 4, 6, 8):
        (tmp_path / step_file_name("m", step)).write_text("x")
        Retention(tmp_path, "m", Args()).after_step_save(step)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_file_name("m", 6), step_file_name("m", 8)]


def test_final_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "lora.safetensors"
    save_safetensors_atomic({"a": torch.ones(1)}, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_retention_keeps_the_newest_step_states(tmp_path: Path) -> None:
    class Args:
        save_every_n_steps, save_last_n_steps, save_last_n_steps_state = 2, None, 4
        save_every_n_epochs = save_last_n_epochs = save_last_n_epochs_state = None

    for step in (2, 4, 6, 8):
        (tmp_path / state_lib.step_state_name("m", step)).mkdir()
        Retention(tmp_path, "m", Args()).after_step_save(step)
    assert sorted(p.name for p in tmp_path.iterdir()) == [state_lib.step_state_name("m", s) for s in (4, 6, 8)]
