"""Per-sample loss weights (prior_loss_weight of `is_reg` images) and alpha masks reach the loss (issue 16 point 4).

Directly on library/loss_reduction.py with hand-computed expectations, then through a real training run whose
dataset has a regularization subset: with the learning rate 0 the model never moves, so two runs that differ
only in --prior_loss_weight see the same prediction for the same batch, and every reg batch's logged loss must
be exactly 0.25x (a power of two: the product is exact in float) while the other batches' are equal.

Breaks these tests catch (each was made once and failed them):
- library/loss_reduction.py without `* loss_weights`: every weight is 1;
- `per_sample.mean() * loss_weights.mean()` instead of the per-sample product: weights land on other samples;
- the mask skipped, or the masked loss divided by the mask's mean (not kohya's reduction);
- library/dataset/dataset.py `weight = 1.0` for every sample: the reg batches' losses are not scaled.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
import toml
import torch
from _tiny_run import read_losses, tiny_model, train

from library import train_loop
from library.loss_reduction import reduce_loss

ARGS = Namespace(loss_type="l2")


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """pred and target (B=3, C=16, 4x4) whose per-sample losses differ."""
    generator = torch.Generator().manual_seed(seed)
    pred = torch.randn(3, 16, 4, 4, generator=generator) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1)
    return pred, torch.randn(3, 16, 4, 4, generator=generator)


def test_each_sample_is_scaled_by_its_own_weight() -> None:
    pred, target = batch()
    sigmas = torch.full((3,), 0.5)
    per_sample = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    weights = torch.tensor([1.0, 0.25, 2.0])
    got = reduce_loss(ARGS, pred, target, sigmas, None, weights, None)
    assert torch.allclose(got, (per_sample * weights).mean(), rtol=1e-6, atol=0)
    ones = reduce_loss(ARGS, pred, target, sigmas, None, torch.ones(3), None)
    assert torch.equal(reduce_loss(ARGS, pred, target, sigmas, None, torch.full((3,), 0.25), None), ones * 0.25)
    timestep = torch.tensor([2.0, 1.0, 0.5])  # the timestep weighting multiplies in the same way
    assert torch.allclose(reduce_loss(ARGS, pred, target, sigmas, timestep, weights, None),
                          (per_sample * timestep * weights).mean(), rtol=1e-6, atol=0)


def test_alpha_masks_zero_the_masked_pixels_and_keep_kohyas_mean() -> None:
    pred, target = batch(1)
    sigmas = torch.full((3,), 0.5)
    elementwise = (pred - target) ** 2
    masks = torch.ones(3, 32, 32)  # pixels, 8x the 4x4 latent
    masks[:, :, 16:] = 0.0  # the right half is transparent
    masks[1] = 0.5  # sample 1 half-transparent everywhere
    latent_mask = torch.ones(3, 1, 4, 4)
    latent_mask[:, :, :, 2:] = 0.0
    latent_mask[1] = 0.5
    weights = torch.tensor([1.0, 0.25, 2.0])
    expected = ((elementwise * latent_mask).mean(dim=(1, 2, 3)) * weights).mean()  # mean over all pixels
    got = reduce_loss(ARGS, pred, target, sigmas, None, weights, masks)
    assert torch.allclose(got, expected, rtol=1e-6, atol=0)
    assert not torch.allclose(got, reduce_loss(ARGS, pred, target, sigmas, None, weights, None), rtol=1e-3)


def reg_dataset(tiny: Path, work: Path) -> Path:
    """Batch 1: three train images and three reg images (kohya balances them 1:1), one bucket each."""
    images = sorted((tiny / "dataset").glob("*.png"))
    subsets = []
    for name, chosen, extra in (("train", images[:3], {}), ("reg", images[3:6], {"is_reg": True})):
        folder = work / name
        folder.mkdir(parents=True)
        for image in chosen:
            (folder / image.name).write_bytes(image.read_bytes())
            (folder / image.with_suffix(".txt").name).write_bytes(image.with_suffix(".txt").read_bytes())
        subsets.append({"image_dir": str(folder), "num_repeats": 1, **extra})
    config = toml.loads((tiny / "dataset.toml").read_text(encoding="utf-8"))
    config["datasets"][0]["batch_size"] = 1
    config["datasets"][0]["subsets"] = subsets
    path = work / "reg.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def test_prior_loss_weight_scales_the_reg_batches_of_a_training_run(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = tiny_model(tmp_path / "tiny")
    dataset = reg_dataset(tiny, tmp_path)
    weights_seen: list[list[float]] = []
    original = train_loop.reduce_loss

    def spy(*args: object) -> torch.Tensor:
        weights_seen.append(args[5].tolist())  # type: ignore[union-attr]
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(train_loop, "reduce_loss", spy)
    common = ("--max_train_steps", "6", "--learning_rate", "0", "--max_grad_norm", "0")
    plain = read_losses(train(tiny, tmp_path / "plain", *common, "--prior_loss_weight", "1.0", dataset=dataset))
    weights_seen.clear()
    scaled = read_losses(train(tiny, tmp_path / "scaled", *common, "--prior_loss_weight", "0.25", dataset=dataset))
    assert sorted(weights_seen) == [[0.25]] * 3 + [[1.0]] * 3  # one train, one reg image per batch of the epoch
    for (step, loss), (_, reg_loss), (weight,) in zip(plain, scaled, weights_seen, strict=True):
        assert reg_loss == loss * weight, f"step {step}: weight {weight}"
