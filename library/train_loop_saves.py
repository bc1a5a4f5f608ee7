"""What the step loop writes: LoRA files, state folders, sample images and the loss log.

Why a mixin of `TrainLoop`: these are the loop's own saves (they read its step, position and losses), kept apart so
the loop's file reads as the order of a step; every write is atomic and a failed one stops with a sentence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from library import saving
from library import state as state_lib
from library.loss_curve import write_loss_curve_png, write_loss_log
from library.metadata import per_save_metadata


class LoopSaves:
    """The saves of `library.train_loop.TrainLoop`, which sets every attribute used here and `_read_losses`."""

    args: Any
    acc: Any
    trainer: Any
    bundle: Any
    monitor: Any
    step_logger: Any
    unwrapped: Any
    metadata: dict[str, str]
    output_dir: Path
    output_name: str
    ext: str
    global_step: int
    position: tuple[int, int]
    losses: list[tuple[int, float]]
    base_model: dict[str, Any]
    launcher: list[str]

    # ---- files --------------------------------------------------------------------------------------
    def _sample(self, epoch: int | None) -> None:
        self.bundle.eval_mode()
        if self.acc.is_main_process:
            written = self.trainer.sample_images(self.acc, self.args, epoch, self.global_step, self.models,
                                                 self.unwrapped)
            self.monitor.samples(self.global_step, written or [])
            self.step_logger.log_samples(self.global_step, written or [])
        self.acc.wait_for_everyone()
        self.bundle.train_mode()

    @contextlib.contextmanager
    def _saving(self, target: Path) -> Iterator[None]:
        """A failed write (disk full, folder gone) stops training with a sentence, not a traceback: writes are
        atomic, so the previous files are intact, and the newest complete state says where to resume from."""
        try:
            yield
        except saving.WRITE_ERRORS as exc:
            raise saving.write_failure(target, self.global_step, exc, self.output_dir, self.output_name) from exc

    def _save_step(self, epoch: int, with_state: bool = True) -> str:
        """A step LoRA and its state folder (returns its name): what --save_every_n_steps, Save now and a stop write."""
        self._save_model(saving.step_file_name(self.output_name, self.global_step, self.ext), epoch)
        name = state_lib.step_state_name(self.output_name, self.global_step)
        if with_state:
            self._save_state(name)
        return name

    def _save_model(self, file_name: str, epoch: int) -> None:
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            self.bundle.eval_mode()
            meta = per_save_metadata(self.metadata, self.global_step, epoch)
            with self._saving(self.output_dir / file_name):
                self.unwrapped.save_weights(str(self.output_dir / file_name), saving.save_dtype(self.args), meta)
            self.monitor.event("save", f"step {self.global_step}: {file_name}")
            self.bundle.train_mode()
        self.acc.wait_for_everyone()

    def _save_state(self, name: str) -> None:
        """Records where training stopped (`self.position`), whatever the kind of state; the loss log goes first,
        so it always covers the newest complete state (a resume trims it)."""
        identity = self.trainer.state_identity(self.args)
        epoch, batches_done = self.position
        st = state_lib.TrainState(epoch, self.global_step, batches_done, identity, self.base_model,
                                  self.acc.num_processes, self.launcher)
        with self._saving(self.output_dir / name):
            self._write_loss_log()
            state_lib.save_state(self.acc, self.output_dir / name, st)
        self.monitor.event("save", f"step {self.global_step}: {name}")

    def _write_loss_curve(self) -> Path | None:
        """The end-of-training loss plot beside the LoRA (main process; None when no step ran)."""
        if not self.acc.is_main_process:
            return None
        return write_loss_curve_png(self._loss_log_path(), self.output_dir / f"{self.output_name}-loss.png")

    def _loss_log_path(self) -> Path:
        return self.output_dir / f"{self.output_name}-loss.csv"

    def _write_loss_log(self) -> None:
        self._read_losses()  # a state's loss log covers every step it holds
        if self.acc.is_main_process:
            write_loss_log(self._loss_log_path(), self.losses)
