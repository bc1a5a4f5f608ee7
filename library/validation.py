"""Validation loss on the held-out images (`validation_split`), kohya's scheme made repeatable.

Every validation batch is scored at the same 4 sigmas (kohya's timesteps 200/400/600/800 of 1000) with noise from a
generator seeded by `--validation_seed` (else `--seed`) and the batch's index, with the network and a schedule-free
optimizer in eval mode and no gradients. The global RNG is saved and restored, so validating does not change the
training run; and since nothing depends on when it runs, two validations of the same weights give the same number,
and the number does not depend on how many processes share the batches.
"""

from __future__ import annotations

import contextlib
from argparse import Namespace
from collections.abc import Iterator
from typing import Any

import torch

from library.loss_reduction import reduce_loss
from library.sample_draws import sample_generators

VALIDATION_SIGMAS = (0.2, 0.4, 0.6, 0.8)  # kohya: NUM_VALIDATION_TIMESTEPS = 4, timesteps 200..800 of 1000


def validation_seed(args: Namespace) -> int:
    seed = getattr(args, "validation_seed", None)
    return int(args.seed if seed is None else seed)


def batch_seed(seed: int, index: int) -> int:
    """The noise seed of validation batch `index`: fixed per batch, whatever process or pass scores it."""
    return hash((seed, -1, index)) & 0x7FFF_FFFF_FFFF  # ints only: the same in every process


def num_validation_batches(args: Namespace, val_group: Any) -> int:
    """`--max_validation_steps` caps the batches scored per validation (kohya's meaning)."""
    cap = getattr(args, "max_validation_steps", None)
    return len(val_group) if cap is None else max(0, min(int(cap), len(val_group)))


@contextlib.contextmanager
def _eval_mode(network: Any, bundle: Any) -> Iterator[None]:
    """Network (dropout off) and schedule-free optimizer (averaged weights x) in eval mode, restored after."""
    was_training = network.training
    bundle.eval_mode()
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)
        bundle.train_mode()


def _devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _batch_loss(trainer: Any, args: Namespace, accelerator: Any, models: Any, batch: dict[str, Any],
                seed: int) -> float:
    """Mean loss of one batch over VALIDATION_SIGMAS, with the batch's own noise generators (one per sample)."""
    device = accelerator.device
    latents = batch["latents"]
    if latents is None:
        latents = trainer.encode_images_to_latents(args, models, batch["images"].to(device))
    latents = latents.to(device)
    text = batch["text"]
    if text is None:
        text = trainer.encode_text(args, models, batch["captions"])
    torch.manual_seed(seed)
    generators = sample_generators([seed + position for position in range(latents.shape[0])], device)
    total = 0.0
    for sigma in VALIDATION_SIGMAS:
        sigmas = torch.full((latents.shape[0],), sigma, device=device, dtype=torch.float32)
        with accelerator.autocast():
            pred, target, used, weighting = trainer.get_noise_pred_and_target(
                args, accelerator, models, latents, text, generators, sigmas=sigmas)
        loss = reduce_loss(args, pred, target, used, weighting, batch["loss_weights"], batch.get("alpha_masks"))
        total += float(loss)
    return total / len(VALIDATION_SIGMAS)


def run_validation(trainer: Any, args: Namespace, accelerator: Any, models: Any, network: Any, bundle: Any,
                   val_group: Any, global_step: int) -> float:
    """The mean validation loss over the first `num_validation_batches` batches and the 4 sigmas.

    With N processes, process p scores batches p, p+N, ...; the sums are reduced, so every process returns the
    same mean. `global_step` only names the pass in an error: the numbers must not depend on when it runs.
    """
    count = num_validation_batches(args, val_group)
    if count == 0:
        raise ValueError(f"validation at step {global_step}: no batches (the loop skips validation then)")
    seed = validation_seed(args)
    rank, world = accelerator.process_index, accelerator.num_processes
    totals = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.random.fork_rng(devices=_devices(accelerator.device)), torch.no_grad(), _eval_mode(network, bundle):
        for index in range(rank, count, world):
            totals[0] += _batch_loss(trainer, args, accelerator, models, val_group[index], batch_seed(seed, index))
            totals[1] += 1
    if world > 1:
        totals = accelerator.reduce(totals, reduction="sum")
    return float(totals[0] / totals[1])


def log_validation(accelerator: Any, kind: str, loss: float, recent_losses: list[float], step: int) -> None:
    """kohya's keys: loss/validation/{step,epoch}_average and _divergence (validation minus the training moving
    average over `recent_losses`, the value `loss/average` shows)."""
    divergence = loss - sum(recent_losses) / len(recent_losses) if recent_losses else float("nan")
    accelerator.print(f"\nvalidation loss at step {step} ({kind}): {loss:.4f}")
    if accelerator.trackers:
        accelerator.log({f"loss/validation/{kind}_average": loss, f"loss/validation/{kind}_divergence": divergence},
                        step=step)
