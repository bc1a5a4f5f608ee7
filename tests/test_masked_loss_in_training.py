"""The alpha mask through a real training run (issue 14 point 5): the masked half of the image gives no gradient.

One 64x64 image whose alpha is 0 on its left half and 255 on its right half, trained with `alpha_mask = true`. A
spy on the trainer's step hook registers a gradient hook on the DiT's prediction: the gradient that reaches the
prediction is exactly zero over the left half of the latent and not zero over the right half. Without the mask,
the same step's loss differs.

Mutation this test catches (run once, it failed it): library/loss_reduction.py `if alpha_masks is not None:` ->
`if False:` (alpha masks ignored by the loss reduction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import toml
import torch
from _tiny_run import read_losses, tiny_model, train
from PIL import Image

from anima_train_network import AnimaNetworkTrainer

SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def half_masked_dataset(tiny: Path, work: Path, use_mask: bool) -> Path:
    """A dataset.toml over one RGBA image, transparent on its left half, with or without `alpha_mask`."""
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    source = next(p for p in sorted((tiny / "dataset").glob("*.png")) if Image.open(p).size == (SIZE, SIZE))
    rgba = Image.open(source).convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, SIZE // 2, SIZE))
    rgba.putalpha(alpha)
    rgba.save(images / "masked.png")
    (images / "masked.txt").write_text(source.with_suffix(".txt").read_text(encoding="utf-8"), encoding="utf-8")
    config = {"general": {"caption_extension": ".txt"},
              "datasets": [{"resolution": SIZE, "batch_size": 1, "enable_bucket": False,
                            "subsets": [{"image_dir": str(images), "num_repeats": 1, "alpha_mask": use_mask}]}]}
    path = work / "dataset.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def run_with_gradient_spy(tiny: Path, work: Path, monkeypatch: pytest.MonkeyPatch,
                          use_mask: bool) -> tuple[float, list[torch.Tensor]]:
    """One optimizer step; returns its loss and the gradient that reached the prediction."""
    grads: list[torch.Tensor] = []
    original_step = AnimaNetworkTrainer.get_noise_pred_and_target

    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        pred, target, sigmas, weighting = original_step(self, *args, **kwargs)
        pred.register_hook(lambda grad: grads.append(grad.detach().clone()))
        return pred, target, sigmas, weighting

    monkeypatch.setattr(AnimaNetworkTrainer, "get_noise_pred_and_target", step)
    dataset = half_masked_dataset(tiny, work, use_mask)
    out = train(tiny, work / "out", "--max_train_steps", "1", dataset=dataset)
    return read_losses(out)[0][1], grads


def test_the_transparent_half_gives_no_gradient_and_the_mask_changes_the_loss(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loss, grads = run_with_gradient_spy(tiny, tmp_path / "masked", monkeypatch, use_mask=True)
    assert len(grads) == 1
    grad = grads[0]
    width = grad.shape[-1]
    assert width == SIZE // 8
    left, right = grad[..., : width // 2], grad[..., width // 2:]
    assert torch.count_nonzero(left) == 0, f"the transparent half got gradient {left.abs().max():.3g}"
    assert right.abs().min() > 0, "the opaque half must get gradient everywhere"

    unmasked_loss, unmasked_grads = run_with_gradient_spy(tiny, tmp_path / "plain", monkeypatch, use_mask=False)
    assert torch.count_nonzero(unmasked_grads[0][..., : width // 2]) > 0
    assert abs(unmasked_loss - loss) > 1e-3 * abs(unmasked_loss), (loss, unmasked_loss)
