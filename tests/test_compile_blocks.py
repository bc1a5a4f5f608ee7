"""`--torch_compile`: each DiT block compiled with static shapes, once per bucket shape, counted by the ledger
(library/anima/compile.py, compile_ledger.py), with the loss and LoRA gradients of the eager model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch._dynamo
from _tiny_run import read_losses, tiny_model, train
from test_memory_options import add_lora, build, inputs

from library.anima import network_trainer
from library.anima.block_swap import enable_block_swap
from library.anima.compile import compile_blocks
from library.anima.compile_ledger import block_input_shape
from library.errors import ConfigError
from networks import lora_anima


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def bucket_step(model, lora, side: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward + backward at a latent of side × side (a bucket shape)."""
    lora.zero_grad(set_to_none=True)
    x, sigmas, context = inputs()
    x = torch.nn.functional.interpolate(x[:, :, 0], size=(side, side)).unsqueeze(2)
    loss = model(x, sigmas, context).square().mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in lora.named_parameters()}


def test_each_bucket_shape_compiles_once_and_matches_eager():
    """Six steps alternating two bucket shapes: two static graphs per shape (the first block, whose input carries
    no gradient, and the other three), none compiled twice, losses and gradients as in eager.
    Breaks caught: `dynamic=True` in compile_blocks (a symbolic graph, `dynamic` recorded), and the ledger not
    recording compiles (the count falls to 0)."""
    model = build()
    lora = add_lora(model)
    expected = {side: bucket_step(model, lora, side) for side in (8, 12)}
    ledger = compile_blocks(model, backend="eager", bucket_shapes=2)
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    assert model._compiled_call_impl is None  # the model itself is not compiled
    for side in (8, 12, 8, 12, 8, 12):
        loss, grads = bucket_step(model, lora, side)
        torch.testing.assert_close(loss, expected[side][0], rtol=1e-6, atol=0)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected[side][1][name], rtol=1e-5, atol=1e-7, msg=name)
    assert len(ledger.compiles) == 4 and ledger.repeats == 0
    assert not any(dynamic for _signature, _grad, dynamic in ledger.compiles)
    shapes = sorted(block_input_shape(signature) for signature, _grad, _dynamic in ledger.compiles)
    assert shapes == [(2, 16, 64)] * 2 + [(2, 36, 64)] * 2  # (8 / 2)² and (12 / 2)² patches, each static


def test_a_compile_for_inputs_already_compiled_is_warned(caplog: pytest.LogCaptureFixture):
    """A guard other than the shapes failing compiles the same inputs again: here the network's multiplier, a Python
    number the LoRA forward reads, changed between steps. The ledger counts it and says how to find the guard.
    Break caught: the repeat check comparing against nothing (no warning, `repeats` stays 0)."""
    model = build()
    network = lora_anima.create_network(1.0, 4, 4.0, None, [], model)
    network.apply_to([], model, False, True)
    ledger = compile_blocks(model, backend="eager")
    model(*inputs()).square().mean().backward()
    network.set_multiplier(0.5)
    with caplog.at_level(logging.WARNING, logger="library.anima.compile_ledger"):
        model(*inputs()).square().mean().backward()
    assert ledger.repeats == 2 and "TORCH_LOGS=recompiles" in caplog.text


def test_compile_rejects_bad_backends_and_cuda_graphs_with_block_swap():
    with pytest.raises(ConfigError, match="--dynamo_backend 'nope'"):
        compile_blocks(build(), backend="nope")
    model = build()
    enable_block_swap(model, 1, "cpu")
    with pytest.raises(ConfigError, match="reduce-overhead"):
        compile_blocks(model, backend="eager", mode="reduce-overhead")


def test_training_with_compile_counts_the_dataset_bucket_shapes_and_trains_as_eager(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The trainer's wiring: the dataset's batch shapes reach compile_blocks, the run compiles at most two graphs
    per shape and trains the same losses as without compile.
    Breaks caught: `bucket_shapes` not passed from the dataset (None), and a shape-dependent recompile (count)."""
    tiny = tiny_model(tmp_path / "tiny")
    ledgers = []

    def recording(*args, **kwargs):
        ledgers.append(compile_blocks(*args, **kwargs))
        return ledgers[-1]

    monkeypatch.setattr(network_trainer, "compile_blocks", recording)
    run = ("--max_train_steps", "4", "--dynamo_backend", "eager")
    compiled = read_losses(train(tiny, tmp_path / "compiled", *run, "--torch_compile"))
    eager = read_losses(train(tiny, tmp_path / "eager", *run))
    [ledger] = ledgers
    assert ledger.bucket_shapes >= 2
    assert 0 < len(ledger.compiles) <= 2 * ledger.bucket_shapes and ledger.repeats == 0
    assert [pytest.approx(loss, rel=1e-5) for _, loss in eager] == [loss for _, loss in compiled]
