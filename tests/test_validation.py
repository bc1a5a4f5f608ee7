"""run_validation (issue 5) with a stub trainer: fixed sigmas, repeatable, RNG untouched, eval mode, sharding."""

from __future__ import annotations

import contextlib
import random
from argparse import Namespace
from typing import Any

import pytest
import schedulefree
import torch

from library.registries.optimizers import OptimizerBundle
from library.validation import VALIDATION_SIGMAS, run_validation


class StubTrainer:
    """Latents are the first two image channels; the network denoises (1 - s) * latents + s * noise."""

    def __init__(self, network: torch.nn.Module, optimizer: Any = None) -> None:
        self.network, self.optimizer = network, optimizer
        self.calls: list[dict[str, Any]] = []

    def encode_images_to_latents(self, args: Namespace, models: Any, images: torch.Tensor) -> torch.Tensor:
        return images[:, :2]

    def encode_text(self, args: Namespace, models: Any, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        return [{"caption": torch.tensor([len(c)])} for c in captions]

    def get_noise_pred_and_target(self, args: Namespace, accelerator: Any, models: Any, latents: torch.Tensor,
                                  text: list[dict[str, torch.Tensor]], generators: list[torch.Generator],
                                  sigmas: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        assert sigmas is not None, "validation must give the sigmas"
        self.calls.append({"sigmas": sigmas.tolist(), "grad": torch.is_grad_enabled(),
                           "network_training": self.network.training, "captions": [int(t["caption"]) for t in text],
                           "optimizer_training": None if self.optimizer is None
                           else self.optimizer.param_groups[0]["train_mode"]})
        noise = torch.cat([torch.randn((1, *latents.shape[1:]), generator=g) for g in generators])
        s = sigmas.view(-1, 1, 1, 1)
        return self.network((1 - s) * latents + s * noise), noise - latents, sigmas, None


def batches(count: int) -> list[dict[str, Any]]:
    """`count` batches of 2 images; the caption length tells the batches apart."""
    generator = torch.Generator().manual_seed(0)
    return [{"images": torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1, "latents": None, "text": None,
             "captions": ["x" * (i + 1)] * 2, "loss_weights": torch.ones(2), "alpha_masks": None}
            for i in range(count)]


def make_args(**extra: Any) -> Namespace:
    return Namespace(**({"seed": 1, "validation_seed": None, "max_validation_steps": None, "loss_type": "l2"}
                        | extra))


def accelerator(rank: int = 0, world: int = 1, reduced: list[torch.Tensor] | None = None) -> Namespace:
    def reduce(tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum" and reduced is not None
        reduced.append(tensor.clone())
        return tensor

    return Namespace(device=torch.device("cpu"), process_index=rank, num_processes=world,
                     autocast=contextlib.nullcontext, reduce=reduce)


def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Conv2d(2, 2, 1))


def plain_bundle(net: torch.nn.Module) -> OptimizerBundle:
    return OptimizerBundle(torch.optim.SGD(net.parameters(), lr=0.1), "sgd")


def test_same_weights_give_the_same_number_and_the_global_rng_is_untouched() -> None:
    net = network()
    trainer, group = StubTrainer(net), batches(3)
    torch.manual_seed(42)
    random.seed(42)
    first = run_validation(trainer, make_args(), accelerator(), None, net, plain_bundle(net), group, 10)
    after = (torch.rand(3), random.random())
    torch.manual_seed(42)
    random.seed(42)
    expected = (torch.rand(3), random.random())
    assert torch.equal(after[0], expected[0]) and after[1] == expected[1], "validation moved the global RNG"
    again = run_validation(trainer, make_args(), accelerator(), None, net, plain_bundle(net), group, 20)
    assert first == again and first > 0
    other_seed = run_validation(trainer, make_args(validation_seed=7), accelerator(), None, net, plain_bundle(net),
                                group, 20)
    assert other_seed != first


def test_each_batch_is_scored_at_the_four_fixed_sigmas_without_gradients() -> None:
    net = network()
    trainer = StubTrainer(net)
    run_validation(trainer, make_args(max_validation_steps=2), accelerator(), None, net, plain_bundle(net),
                   batches(5), 0)
    sigmas = torch.tensor([call["sigmas"] for call in trainer.calls])
    assert torch.equal(sigmas, torch.tensor([[s, s] for s in (0.2, 0.4, 0.6, 0.8)] * 2))
    assert [call["captions"] for call in trainer.calls] == [[1, 1]] * 4 + [[2, 2]] * 4
    assert not any(call["grad"] for call in trainer.calls)


def test_value_is_the_mean_over_batches_and_sigmas() -> None:
    class Constant(StubTrainer):
        def get_noise_pred_and_target(self, args, accelerator, models, latents, text, generators, sigmas=None):
            target = sigmas.view(-1, 1, 1, 1).expand_as(latents)
            return torch.zeros_like(latents), target, sigmas, None

    net = network()
    value = run_validation(Constant(net), make_args(), accelerator(), None, net, plain_bundle(net), batches(3), 0)
    assert value == pytest.approx(sum(s * s for s in VALIDATION_SIGMAS) / 4)


def test_network_and_schedule_free_optimizer_are_in_eval_mode_and_restored() -> None:
    net = network()
    optimizer = schedulefree.AdamWScheduleFree(net.parameters(), lr=0.1)
    bundle = OptimizerBundle(optimizer, "sf", is_schedule_free=True)
    bundle.train_mode()
    for _ in range(3):  # some steps, so the averaged weights x differ from the train weights y
        net[1].weight.sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    train_weights = net[1].weight.detach().clone()
    trainer = StubTrainer(net, optimizer)
    value = run_validation(trainer, make_args(max_validation_steps=1), accelerator(), None, net, bundle, batches(2), 0)
    assert all(not c["network_training"] and c["optimizer_training"] is False for c in trainer.calls)
    assert net.training and optimizer.param_groups[0]["train_mode"]
    assert torch.allclose(net[1].weight, train_weights)
    optimizer.eval()
    net.eval()
    direct = run_validation(trainer, make_args(max_validation_steps=1), accelerator(), None, net, plain_bundle(net),
                            batches(2), 0)
    assert value == pytest.approx(direct, rel=1e-6), "validation did not use the averaged weights x"
    assert not net.training, "a network that was in eval mode must stay so"


def test_processes_share_the_batches_and_agree_with_one_process() -> None:
    net = network()
    group = batches(5)
    single = run_validation(StubTrainer(net), make_args(), accelerator(), None, net, plain_bundle(net), group, 0)
    reduced: list[torch.Tensor] = []
    seen = []
    for rank in (0, 1):
        trainer = StubTrainer(net)
        run_validation(trainer, make_args(), accelerator(rank, 2, reduced), None, net, plain_bundle(net), group, 0)
        seen.append(sorted({call["captions"][0] for call in trainer.calls}))
    assert seen == [[1, 3, 5], [2, 4]]
    total = reduced[0] + reduced[1]
    assert float(total[1]) == 5 and float(total[0] / total[1]) == pytest.approx(single, rel=1e-12)
