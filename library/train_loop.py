"""The step loop: deterministic per step, so an interrupted or resumed run continues exactly.

Every random draw of a sample (noise, timesteps) comes from a seed derived from (seed, epoch, the sample's draw
key), dropout from (seed, epoch, global batch index), and the data order from (seed, epoch); so a run resumed from
a state folder replays the same numbers without needing the RNG state of the run that wrote it.
"""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from library import saving, tracking
from library import state as state_lib
from library.launch_command import launch_prefix
from library.loss_curve import read_loss_csv
from library.loss_reduction import reduce_loss
from library.monitor.run_monitor import RunMonitor
from library.nonfinite import NonFiniteGuard
from library.run_summary import saved_line, training_summary
from library.sample_draws import micro_seed, sample_generators, sample_seed
from library.seed_alerts import SeedAlerts
from library.signals import StopRequest, end_run, exit_code, exit_worker
from library.step_readout import StepReadout
from library.step_requests import agreed_requests
from library.text_encoder_lora import encode_step_text
from library.train_loop_saves import LoopSaves
from library.validation import log_validation, num_validation_batches, run_validation

logger = logging.getLogger(__name__)


class TrainLoop(LoopSaves):
    """Runs epochs and steps, and decides when to sample and save; the model work is the trainer's."""

    def __init__(self, trainer: Any, args: Namespace, accelerator: Any, models: Any, network: Any, optimizer: Any,
                 scheduler: Any, bundle: Any, loader: Any, dataset: Any, lr_descriptions: list[str],
                 metadata: dict[str, str], steps_per_epoch: int, num_epochs: int) -> None:
        self.trainer, self.args, self.acc, self.models = trainer, args, accelerator, models
        self.network, self.optimizer, self.scheduler, self.bundle = network, optimizer, scheduler, bundle
        self.loader, self.dataset, self.lr_descriptions, self.metadata = loader, dataset, lr_descriptions, metadata
        self.steps_per_epoch, self.num_epochs = steps_per_epoch, num_epochs
        self.output_dir = Path(args.output_dir)
        self.output_name = args.output_name or "last"
        self.ext = saving.model_ext(args)
        self.retention = saving.Retention(self.output_dir, self.output_name, args)
        self.global_step, self.start_epoch, self.skip_batches = 0, 1, 0
        self.position = (1, 0)  # (epoch in progress, its batches done): what every state records
        self.losses: list[tuple[int, float]] = []
        self.stop = StopRequest()
        self.nonfinite = NonFiniteGuard(args.nonfinite_loss, accelerator)
        self.readout = StepReadout(args.logging_every_n_steps)
        self.requests: list[tuple[int, int]] = []  # each process's (stop signal, save now), read with the flags
        self.step_logger = tracking.StepLogger(accelerator, lr_descriptions, SeedAlerts(args, self.acc.device, self.stop))
        self.started_at = self.run_started_at = time.time()
        self.run_first_step = 0
        validation = getattr(dataset, "validation", None)
        self.validation = validation if validation is not None and num_validation_batches(args, validation) else None
        self.base_model = trainer.base_model_identity(args)  # once: the files as this run loaded them
        self.launcher = launch_prefix()  # recorded in states, so a resume can be launched the same way

    @property
    def unwrapped(self) -> Any:
        return self.acc.unwrap_model(self.network)

    def restore(self, st: state_lib.TrainState) -> None:
        self.global_step, self.start_epoch, self.skip_batches = st.current_step, st.current_epoch, st.batches_done_in_epoch
        self.position = (st.current_epoch, st.batches_done_in_epoch)
        if self.skip_batches >= len(self.loader):
            self.start_epoch, self.skip_batches = self.start_epoch + 1, 0
        log = self._loss_log_path()
        self.losses = [row for row in read_loss_csv(log) if row[0] <= self.global_step] if log.exists() else []

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        args = self.args
        self.stop.install()
        self.monitor = RunMonitor(args, self.acc, self.stop, self.lr_descriptions, self.metadata)
        self.run_started_at, self.run_first_step = time.time(), self.global_step
        self.bundle.train_mode()
        try:  # the bar is closed before the summary: closing it later would print it again below the summary
            with tqdm(total=args.max_train_steps, initial=self.global_step, desc="steps", smoothing=0.1,
                      disable=not self.acc.is_local_main_process) as progress:
                if self.global_step == 0 and args.sample_at_first:
                    self._sample(epoch=0)
                for epoch in range(self.start_epoch, self.num_epochs + 1):
                    self._run_epoch(epoch, progress)
                    if self.global_step >= args.max_train_steps:
                        break
            self._finish()
        finally:
            self.stop.uninstall()
            self.monitor.close("failed")  # a no-op when the run ended normally: it closed the monitor already

    def _run_epoch(self, epoch: int, progress: Any) -> None:
        """The epoch's steps, up to --max_train_steps, then the end-of-epoch work (kohya runs it for a last,
        partial epoch too: its sample and validation)."""
        args, grad_accum = self.args, self.args.gradient_accumulation_steps
        self.dataset.set_epoch(epoch)
        self.unwrapped.on_epoch_start(self.models.text_encoders, self.models.denoiser)
        n_batches = len(self.loader)
        skip, self.skip_batches = self.skip_batches, 0
        loader = self.acc.skip_first_batches(self.loader, skip) if skip else self.loader
        step_losses: list[torch.Tensor] = []  # on the device: read every --logging_every_n_steps (step_readout.py)
        for index, batch in enumerate(loader, start=skip):
            step_losses.append(self._micro_step(batch, epoch, index, grad_accum))
            self.nonfinite.note(step_losses[-1], batch["image_keys"])
            if (index + 1) % grad_accum and index + 1 != n_batches:
                continue
            self.requests = self.nonfinite.read_flags(self.stop.signum, self.monitor.take_save_request())  # one wait
            skipped = self.nonfinite.skip_step(self.global_step + 1, epoch)  # or stops the run, weights untouched
            self._optimizer_step(skipped)
            self.global_step += 1
            progress.update(1)
            if not skipped:  # a skipped step has no loss row: a gap in the loss log and curve
                self.readout.add(self.global_step, torch.stack(step_losses).mean(), self.scheduler.get_last_lr(),
                                 self.optimizer.param_groups)
            step_losses = []
            self.position = (epoch, index + 1)
            if self.readout.due(self.global_step):
                self._read_losses(progress)
            self._after_step(epoch)
            if self.global_step >= args.max_train_steps:
                break  # a stop asked for at the last step just finishes: the final LoRA is written either way
            save_now, stop = agreed_requests(self.acc, self.stop, self.requests)  # any process's, after this step
            if save_now and not stop:
                self._save_step(epoch)
            if stop:
                self._interrupt(epoch, progress)
        self._after_epoch(epoch)

    def _micro_step(self, batch: dict[str, Any], epoch: int, index: int, grad_accum: int) -> torch.Tensor:
        args, acc, trainer = self.args, self.acc, self.trainer
        torch.manual_seed(micro_seed(args.seed, epoch, index * acc.num_processes + acc.process_index))  # dropout
        generators = sample_generators([sample_seed(args.seed, epoch, key) for key in batch["draw_keys"]], acc.device)
        with torch.no_grad():
            latents = batch["latents"]
            if latents is None:
                latents = trainer.encode_images_to_latents(args, self.models, batch["images"].to(acc.device))
        text = batch["text"] or encode_step_text(trainer, args, self.models, batch["captions"])  # grad: a Qwen3 LoRA
        with acc.autocast():
            pred, target, sigmas, weighting = trainer.get_noise_pred_and_target(
                args, acc, self.models, latents.to(acc.device), text, generators)
        self.step_logger.add_sigmas(sigmas)
        loss = reduce_loss(args, pred, target, sigmas, weighting, batch["loss_weights"], batch.get("alpha_masks"))
        acc.backward(loss / grad_accum)
        return loss.detach()

    def _optimizer_step(self, skip: bool = False) -> None:
        """`skip` (a non-finite step): drop the gradients; neither the weights nor the schedule move."""
        if skip:
            self.optimizer.zero_grad(set_to_none=True)
            return
        params = [p for p in self.unwrapped.get_trainable_params() if p.grad is not None]
        if self.acc.num_processes > 1:
            for param in params:
                param.grad = self.acc.reduce(param.grad, reduction="mean")
        if self.args.max_grad_norm:
            self.acc.clip_grad_norm_(params, self.args.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    # ---- what happens between steps ---------------------------------------------------------------
    def _read_losses(self, progress: Any = None) -> None:
        """The steps whose losses wait on the device: to the loss list, the trackers and the bar's loss/avr_loss."""
        for row in (rows := self.readout.take()):
            self.losses.append((row.step, row.loss))
            recent = [value for _, value in self.losses[-self.steps_per_epoch:]]
            average = sum(recent) / len(recent)
            self.step_logger.log(row.step, row.loss, average, row.lrs, row.groups)
        if rows and progress is not None:
            progress.set_postfix(loss=f"{rows[-1].loss:.4f}", avr_loss=f"{average:.4f}", lr=f"{rows[-1].lrs[0]:.2e}")

    def _after_step(self, epoch: int) -> None:
        args = self.args
        self.monitor.step(self.global_step, epoch, self.losses, self.steps_per_epoch, self.scheduler.get_last_lr())
        if args.sample_every_n_steps and not args.sample_every_n_epochs and self.global_step % args.sample_every_n_steps == 0:
            self._sample(epoch=None)
        if args.save_every_n_steps and self.global_step % args.save_every_n_steps == 0:
            self._save_step(epoch, with_state=bool(args.save_state))
            if self.acc.is_main_process:
                self.retention.after_step_save(self.global_step)
        if self.validation is not None and args.validate_every_n_steps and \
                self.global_step % args.validate_every_n_steps == 0:
            self._log_validation("step", self._validate())

    def _after_epoch(self, epoch: int) -> None:
        args = self.args
        self._validate_epoch(epoch)
        self.acc.wait_for_everyone()
        if args.save_every_n_epochs and epoch % args.save_every_n_epochs == 0 and epoch < self.num_epochs:
            self._save_model(saving.epoch_file_name(self.output_name, epoch, self.ext), epoch)
            if args.save_state:
                self._save_state(state_lib.epoch_state_name(self.output_name, epoch))
            if self.acc.is_main_process:
                self.retention.after_epoch_save(epoch)
        if args.sample_every_n_epochs and epoch % args.sample_every_n_epochs == 0:
            self._sample(epoch=epoch)

    # ---- validation (library/validation.py) ----------------------------------------------------------
    def _validate_epoch(self, epoch: int) -> None:
        """kohya: every epoch unless --validate_every_n_epochs says otherwise (only with a validation set)."""
        every = self.args.validate_every_n_epochs
        if self.validation is not None and (every is None or epoch % every == 0):
            self._log_validation("epoch", self._validate())

    def _validate(self) -> float:
        return run_validation(self.trainer, self.args, self.acc, self.models, self.unwrapped, self.bundle,
                              self.validation, self.global_step)

    def _log_validation(self, kind: str, loss: float) -> None:
        self._read_losses()  # the divergence compares with the latest training losses
        log_validation(self.acc, kind, loss, [value for _, value in self.losses[-self.steps_per_epoch:]],
                       self.global_step)

    def _interrupt(self, epoch: int, progress: Any) -> None:
        progress.close()  # before the resume command: closing it on the way out would print the bar below it
        self.stop.saving = True
        name = self._save_step(epoch)
        stopped = (f"Stopped by {self.stop.signal_name or 'a signal'} at step {self.global_step}. "
                   f"To continue exactly where it stopped:\n  {state_lib.resume_command(self.output_dir / name)}")
        self.acc.print(f"\n{stopped}")
        self.monitor.close("stopped", stopped)
        self.acc.wait_for_everyone()  # the others wait while the page fetches the last events: none exits first
        end_run(self.acc)
        if self.acc.num_processes > 1:
            exit_worker(exit_code(self.stop.agreed))
        raise SystemExit(exit_code(self.stop.agreed))

    def _finish(self) -> None:
        self.acc.wait_for_everyone()
        final = self.output_dir / saving.final_file_name(self.output_name, self.ext)
        self._save_model(final.name, self.num_epochs)
        if self.args.save_state or self.args.save_state_on_train_end:
            self._save_state(state_lib.final_state_name(self.output_name))
        with self._saving(self._loss_log_path()):
            self._write_loss_log()
            curve = self._write_loss_curve()
        run_dir = self.acc.logging_dir if self.acc.trackers else None
        end_run(self.acc)
        self.acc.print(saved_line(self.acc.is_main_process, self.global_step, final))
        if self.acc.is_main_process:
            now = time.time()
            self.acc.print(training_summary(self.losses, self.steps_per_epoch, self.num_epochs, now - self.started_at,
                                            self.global_step - self.run_first_step, now - self.run_started_at,
                                            final, [self._loss_log_path(), curve, run_dir]))
        self.monitor.close("finished", f"Training finished at step {self.global_step}: {final}")
