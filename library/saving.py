"""Where and when LoRA files and state folders are written (kohya's names and retention rules)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from library import state as state_lib
from library.errors import ConfigError

SAVE_DTYPES = {None: None, "float": torch.float32, "fp32": torch.float32, "fp16": torch.float16,
               "bf16": torch.bfloat16}
PROBE_MIN_FREE_BYTES = 64 * 1024 * 1024
# What a full disk or a file-size limit raises while writing: OSError from Python's own writes, SafetensorError from
# safetensors ("No space left on device"), RuntimeError from torch.save's zip writer ("unexpected pos").
WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)


def step_file_name(output_name: str, step: int, ext: str = "safetensors") -> str:
    return f"{output_name}-step{step:08d}.{ext}"


def epoch_file_name(output_name: str, epoch: int, ext: str = "safetensors") -> str:
    return f"{output_name}-{epoch:06d}.{ext}"


def final_file_name(output_name: str, ext: str = "safetensors") -> str:
    return f"{output_name}.{ext}"


def model_ext(args: Any) -> str:
    """kohya's --save_model_as: safetensors (default; what ComfyUI and every tool reads), or ckpt / pt (torch.save)."""
    return getattr(args, "save_model_as", None) or "safetensors"


def probe_output_dir(output_dir: str | None) -> Path:
    """Fail before training if the output folder cannot take files (read-only, missing, full)."""
    if not output_dir:
        raise ConfigError("--output_dir is not set. Give the folder where the LoRA files go, e.g. --output_dir output.")
    folder = Path(output_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe.tmp"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"--output_dir {output_dir}: cannot write there ({exc.strerror or exc}). "
                          f"Choose a writable folder or fix its permissions.") from exc
    free = shutil.disk_usage(folder).free
    if free < PROBE_MIN_FREE_BYTES:
        raise ConfigError(f"--output_dir {output_dir}: only {free // 2**20} MiB free on that disk; at least "
                          f"{PROBE_MIN_FREE_BYTES // 2**20} MiB are needed for LoRA files and states. Free some space.")
    return folder


def save_dtype(args: Any) -> torch.dtype | None:
    name = getattr(args, "save_precision", None)
    if name not in SAVE_DTYPES:
        raise ConfigError(f"--save_precision {name!r}: use one of float, fp16, bf16 (or leave it unset).")
    return SAVE_DTYPES[name]


@dataclass
class Retention:
    """kohya's --save_last_n_* rules: which older files and states to delete after a save."""

    output_dir: Path
    output_name: str
    args: Any

    def after_step_save(self, step: int) -> None:
        every = self.args.save_every_n_steps or 0
        keep_files = self.args.save_last_n_steps
        keep_states = self.args.save_last_n_steps_state or keep_files
        for keep, remove in ((keep_files, self._remove_step_file), (keep_states, self._remove_step_state)):
            if keep and every:
                old = ((step - keep - 1) // every) * every
                if old > 0:
                    remove(old)

    def after_epoch_save(self, epoch: int) -> None:
        every = self.args.save_every_n_epochs or 0
        keep_files = self.args.save_last_n_epochs
        keep_states = self.args.save_last_n_epochs_state or keep_files
        for keep, remove in ((keep_files, self._remove_epoch_file), (keep_states, self._remove_epoch_state)):
            if keep and every:
                old = epoch - every * keep
                if old > 0:
                    remove(old)

    def _remove_step_file(self, step: int) -> None:
        _remove(self.output_dir / step_file_name(self.output_name, step, model_ext(self.args)))

    def _remove_step_state(self, step: int) -> None:
        shutil.rmtree(self.output_dir / state_lib.step_state_name(self.output_name, step), ignore_errors=True)

    def _remove_epoch_file(self, epoch: int) -> None:
        _remove(self.output_dir / epoch_file_name(self.output_name, epoch, model_ext(self.args)))

    def _remove_epoch_state(self, epoch: int) -> None:
        shutil.rmtree(self.output_dir / state_lib.epoch_state_name(self.output_name, epoch), ignore_errors=True)


def _remove(path: Path) -> None:
    if path.exists():
        os.remove(path)


def write_failure(target: Path, step: int, exc: BaseException, output_dir: Path, output_name: str) -> ConfigError:
    """The sentence for a write that failed mid-run: what, why, the free space, and where to resume from. Writes
    are atomic and their temporaries removed, so every earlier file is complete and untouched."""
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
    try:
        free = f"{shutil.disk_usage(output_dir).free / 2**20:.1f} MiB free on that disk"
    except OSError:
        free = "free space unknown"
    newest = state_lib.newest_state(output_dir, output_name)
    how = (f"The newest complete state is {newest}. Free some space (or lift the file-size limit), then continue "
           f"with:\n  {state_lib.resume_command(newest)}" if newest else
           "No resumable state exists yet (use --save_state to write them); free some space and start again.")
    return ConfigError(f"saving {target} failed at step {step}: {reason} ({free}). Training stopped. Files already "
                       f"under their final names were not touched, and the unfinished file was removed. {how}")
