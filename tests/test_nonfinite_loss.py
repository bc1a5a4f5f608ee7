"""A NaN loss never reaches the weights or a saved file (issue 17 point 6).

Real runs of the tiny model on one image (one step per epoch); the trainer's prediction is made NaN at chosen
steps, so the loss and every gradient of those steps are NaN, as with a broken cache or a diverged model.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from _launch import launch_command, launch_env
from _tiny_run import REPO, images_dataset, one_image_dataset, read_losses, state_dict_of, tiny_model, train
from safetensors import safe_open
from safetensors.torch import load_file

from anima_train_network import AnimaNetworkTrainer
from library.atomic import save_safetensors_atomic
from library.cache import checksum
from library.errors import NonFiniteError
from library.nonfinite import NonFiniteGuard
from library.train_loop import TrainLoop

NAME = "anima_tiny_lora"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def dataset(tiny: Path, tmp_path: Path) -> Path:
    return one_image_dataset(tiny, tmp_path / "data")


def image_of(dataset: Path) -> Path:
    return next((dataset.parent / "one_image").glob("*.png"))


@pytest.fixture()
def saved(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """{file name: sha256 right after the trainer wrote it}, to show that no file is rewritten later."""
    written: dict[str, str] = {}
    original = TrainLoop._save_model

    def save_and_hash(loop: TrainLoop, file_name: str, epoch: int) -> None:
        original(loop, file_name, epoch)
        written[file_name] = sha256(loop.output_dir / file_name)

    monkeypatch.setattr(TrainLoop, "_save_model", save_and_hash)
    yield written


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nan_at(monkeypatch: pytest.MonkeyPatch, steps: set[int] | range) -> None:
    """The prediction of these steps (1-based; one micro-batch per step) becomes NaN, inside the autograd graph."""
    original = AnimaNetworkTrainer.get_noise_pred_and_target
    calls = [0]

    def poisoned(self: Any, *args: Any, **kwargs: Any) -> Any:
        pred, target, sigmas, weighting = original(self, *args, **kwargs)
        calls[0] += 1
        return (pred * float("nan") if calls[0] in steps else pred), target, sigmas, weighting

    monkeypatch.setattr(AnimaNetworkTrainer, "get_noise_pred_and_target", poisoned)


def all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state_dict_of(path).values())


def test_a_nan_loss_stops_training_before_the_weights_change(tiny: Path, dataset: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             saved: dict[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Catches: library/nonfinite.py `bad = [...]` -> `bad = []` (no check: step 3 updates the weights with NaN,
    and only the save guard stops the run, at step 4, with another message), and main() exiting 2 instead of
    `exc.exit_code`."""
    nan_at(monkeypatch, {3})
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        train(tiny, out, "--max_train_steps", "4", "--save_every_n_steps", "2", "--save_state", dataset=dataset)
    assert stopped.value.code == 3
    message = capsys.readouterr().err
    assert "the loss is nan at step 3 (epoch 3)" in message and str(image_of(dataset)) in message
    assert "delete their latent and text-encoder cache files" in message and "lower the learning rate" in message
    step2 = f"{NAME}-step00000002.safetensors"
    assert list(saved) == [step2] and saved[step2] == sha256(out / step2) and all_finite(out / step2)
    assert sorted(p.name for p in out.glob("*.safetensors")) == [step2]  # no final LoRA, no step 3 or 4 file
    assert (out / f"{NAME}-step00000002-state").is_dir() and not list(out.glob("*step00000003*"))
    assert [step for step, _ in read_losses(out)] == [1, 2]


def test_skip_mode_drops_exactly_the_nan_step(tiny: Path, dataset: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Catches: library/train_loop.py `self._optimizer_step(skipped)` -> `self._optimizer_step()` (the NaN
    gradients reach the weights: the final save is refused) and a skipped step recorded in the loss log."""
    nan_at(monkeypatch, {2})
    out = train(tiny, tmp_path / "out", "--max_train_steps", "4", "--nonfinite_loss", "skip", dataset=dataset)
    assert [step for step, _ in read_losses(out)] == [1, 3, 4]
    assert all_finite(out / f"{NAME}.safetensors")
    assert "the loss is nan at step 2 (epoch 2)" in caplog.text and "1 skipped so far" in caplog.text


def test_skip_mode_stops_after_too_many_nan_steps_in_a_row(tiny: Path, dataset: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, saved: dict[str, str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Steps 2, 3, 4 are skipped (MAX_SKIPPED_IN_A_ROW = 3), step 5 stops. Catches: library/nonfinite.py
    `self.in_a_row <= MAX_SKIPPED_IN_A_ROW` -> `True` (a run that only ever skips trains to its end)."""
    nan_at(monkeypatch, range(2, 100))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        train(tiny, out, "--max_train_steps", "6", "--nonfinite_loss", "skip", dataset=dataset)
    assert stopped.value.code == 3
    message = capsys.readouterr().err
    assert "the loss is nan at step 5 (epoch 5) on the batch of" in message and "(4 steps in a row)" in message
    assert not saved and not list(out.glob("*.safetensors"))


def test_the_save_guard_refuses_a_non_finite_network(tiny: Path, dataset: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, saved: dict[str, str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With the loss check off, step 2's NaN gradients make the weights NaN; the step-2 save must refuse to write
    them. Catches: networks/_base.py without `check_finite_tensors(...)` (a NaN LoRA is written, exit 0)."""
    monkeypatch.setattr(NonFiniteGuard, "skip_step", lambda self, step, epoch: False)  # the flags are still read
    nan_at(monkeypatch, {2})
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        train(tiny, out, "--max_train_steps", "3", "--save_every_n_steps", "1", dataset=dataset)
    assert stopped.value.code == NonFiniteError.exit_code
    assert f"refusing to write {out / f'{NAME}-step00000002.safetensors'}" in capsys.readouterr().err
    assert list(saved) == [f"{NAME}-step00000001.safetensors"]
    assert sorted(p.name for p in out.glob("*.safetensors")) == list(saved)


def nan_latent_cache(file: Path) -> None:
    """Every latent of `file` becomes NaN, with checksums to match: a cache written by a broken encoder, which no
    cache check can tell from a good one."""
    with safe_open(str(file), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = {k: torch.full_like(t, float("nan")) for k, t in load_file(str(file)).items()}
    save_safetensors_atomic(tensors, file, {**metadata, checksum.KEY: checksum.checksums_text(tensors)})


def test_two_processes_stop_at_the_same_step(tiny: Path, tmp_path: Path) -> None:
    """Two images, batch 1, two gloo processes: each step, one process trains on the image whose cached latents are
    NaN. Both stop at step 1, each with its message; the launcher exits 1 and names exit code 3 (it may end the other
    process before that one exits by itself). Catches: library/nonfinite.py without its `self.acc.gather(...)` of the
    flags (the other process trains on into a collective that never completes, and says nothing), and its stop
    calling `accelerator.end_training()` (the probe sees the process group destroyed; it hung a CI run)."""
    dataset = images_dataset(tiny, tmp_path, 2, "two")
    images = tmp_path / "two"
    caches = ("--cache_latents_to_disk", "--dataset_config", str(dataset))
    train(tiny, tmp_path / "caching", "--max_train_steps", "1", *caches)  # writes the latent caches
    poisoned = sorted(images.glob("*_latents.safetensors"))[0]
    nan_latent_cache(poisoned)
    out = tmp_path / "out"
    command = launch_command(2, "--config_file", str(tiny / "train_args.toml"), "--output_dir", str(out),
                             "--max_train_steps", "3", "--save_every_n_steps", "1", *caches)
    probe = tmp_path / "probe"  # tests/launch_probe: a destroyed process group can hang a worker for ever
    probe.mkdir()
    done = subprocess.run(command, cwd=REPO, env=launch_env(probe), capture_output=True, text=True, timeout=240)
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-3000:]
    image = next(p for p in images.glob("*.png") if poisoned.name.startswith(p.stem + "_"))
    assert f"the loss is nan at step 1 (epoch 1) on the batch of {image}." in log, log[-3000:]
    assert "another process's loss is not finite at step 1 (epoch 1)" in log, log[-3000:]
    assert "exitcode  : 3" in log, log[-3000:]  # the root cause the launcher names (it then ends the other one)
    assert not list(out.glob("*.safetensors"))
    assert not any(probe.iterdir()), "a worker destroyed its process group (library/signals.py end_run)"
