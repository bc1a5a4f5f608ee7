"""Each memory option through a real training run of anima_train_network.py (issue 14 point 3).

tests/test_memory_options.py proves the model helpers exact or close; these runs prove the trainer applies them.
A spy on the trainer's step hook looks at the DiT while training runs: the checkpoint function is called per
block, N blocks are parked between steps and brought in during them, the DiT's Linear weights are float8 during
the step, each block carries its compiled forward. The losses must match the run without the option within the
tolerances the helper tests establish.

Mutations these tests catch (each run once, each failed them):
- library/trainer.py: `models.denoiser.enable_gradient_checkpointing(...)` not called;
- library/trainer.py: `cpu_offload=bool(args.cpu_offload_checkpointing)` -> `cpu_offload=False`;
- library/anima/network_trainer.py `place_denoiser`: `enable_block_swap(...)` not called (the DiT moved whole);
- library/anima/network_trainer.py `load_target_model`: `apply_fp8_base(...)` not called;
- library/anima/network_trainer.py `place_denoiser`: `compile_blocks(...)` not called.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny_run import read_losses, tiny_model, train
from safetensors.torch import load_file, save_file

import library.anima.model as model_module
from anima_train_network import AnimaNetworkTrainer
from library.anima.block_swap import BlockSwap

STEPS = ("--max_train_steps", "3")
FP8_LINEARS = {"q_proj", "k_proj", "v_proj", "output_proj", "layer1", "layer2"}  # AdaLN stays precise
NUM_BLOCKS = 2  # the tiny DiT (tools/make_tiny_anima.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def plain_losses(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    return [loss for _, loss in read_losses(train(tiny, tmp_path_factory.mktemp("plain"), *STEPS))]


def spied_run(tiny: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *options: str) -> tuple[list[float], dict]:
    """Train with `options`; returns the losses and what the spies saw."""
    seen: dict[str, Any] = {"steps": [], "checkpoint_calls": 0, "offloaded_inputs": 0, "brought": 0}
    original_step = AnimaNetworkTrainer.get_noise_pred_and_target

    def step(self, args, accelerator, models, latents, text, generators, sigmas=None):  # type: ignore[no-untyped-def]
        dit = models.denoiser
        hooks = dit.block_hooks
        seen["steps"].append({
            "resident": hooks.resident() if isinstance(hooks, BlockSwap) else None,
            "linear_dtypes": {m.weight.dtype for name, m in dit.blocks.named_modules()
                              if name.rsplit(".", 1)[-1] in FP8_LINEARS},
            "compiled": [block._compiled_call_impl is not None for block in dit.blocks],
        })
        return original_step(self, args, accelerator, models, latents, text, generators, sigmas)

    original_checkpoint = model_module.checkpoint

    def counting_checkpoint(function, x, *rest, **kwargs):  # type: ignore[no-untyped-def]
        seen["checkpoint_calls"] += 1
        seen["offloaded_inputs"] += x.device.type == "cpu" and getattr(function, "__name__", "") == "offloaded"
        return original_checkpoint(function, x, *rest, **kwargs)

    original_bring = BlockSwap._bring

    def counting_bring(self, index):  # type: ignore[no-untyped-def]
        seen["brought"] += self._state.get(index) is not None and self._state[index].value == "parked"
        return original_bring(self, index)

    monkeypatch.setattr(AnimaNetworkTrainer, "get_noise_pred_and_target", step)
    monkeypatch.setattr(model_module, "checkpoint", counting_checkpoint)
    monkeypatch.setattr(BlockSwap, "_bring", counting_bring)
    losses = [loss for _, loss in read_losses(train(tiny, out, *STEPS, *options))]
    return losses, seen


def assert_same_losses(losses: list[float], plain: list[float], rtol: float) -> None:
    assert len(losses) == len(plain) == 3
    for got, want in zip(losses, plain, strict=True):
        assert got == pytest.approx(want, rel=rtol), (losses, plain)


@pytest.mark.parametrize("offload", [False, True])
def test_gradient_checkpointing_reaches_every_block(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    plain_losses: list[float], offload: bool) -> None:
    options = ["--gradient_checkpointing", *(["--cpu_offload_checkpointing"] if offload else [])]
    losses, seen = spied_run(tiny, tmp_path, monkeypatch, *options)
    assert seen["checkpoint_calls"] >= 3 * NUM_BLOCKS  # every block, every step (recompute runs the block only)
    assert seen["offloaded_inputs"] == (seen["checkpoint_calls"] if offload else 0)
    assert_same_losses(losses, plain_losses, 1e-6)  # recomputation is exact (test_memory_options)


def four_block_dit(tiny: Path, folder: Path) -> Path:
    """The tiny DiT with blocks 0 and 1 repeated as 2 and 3: block swap keeps two blocks resident."""
    weights = load_file(str(tiny / "models" / "anima_tiny.safetensors"))
    pattern = re.compile(r"^(.*blocks\.)([01])(\..*)$")
    extra = {f"{m[1]}{int(m[2]) + 2}{m[3]}": value.clone() for key, value in weights.items()
             if (m := pattern.match(key)) and "llm_adapter" not in key}
    path = folder / "anima_tiny_4_blocks.safetensors"
    save_file(weights | extra, str(path))
    return path


def test_blocks_to_swap_parks_blocks_between_steps(tiny: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    dit = ("--pretrained_model_name_or_path", str(four_block_dit(tiny, tmp_path)))
    plain = [loss for _, loss in read_losses(train(tiny, tmp_path / "plain", *STEPS, *dit))]
    losses, seen = spied_run(tiny, tmp_path / "swap", monkeypatch, *dit, "--blocks_to_swap", "2")
    assert [step["resident"] for step in seen["steps"]] == [[0, 1]] * 3  # blocks 2, 3 wait on the offload side
    assert seen["brought"] >= 3 * 2  # and are brought in during every step
    assert_same_losses(losses, plain, 1e-6)  # swapping moves weights, it does not change them


def test_fp8_base_stores_the_linears_in_float8(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               plain_losses: list[float]) -> None:
    losses, seen = spied_run(tiny, tmp_path, monkeypatch, "--fp8_base")
    assert all(step["linear_dtypes"] == {torch.float8_e4m3fn} for step in seen["steps"]), seen["steps"]  # q/k/v/o
    assert losses != plain_losses
    assert_same_losses(losses, plain_losses, 2**-4)  # the loss bound of test_fp8_base_stays_close...


def test_torch_compile_wraps_every_block(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         plain_losses: list[float]) -> None:
    # inductor needs a C++ toolchain and minutes on a 2-core CPU; the eager backend runs the same dynamo capture
    torch._dynamo.reset()
    try:
        losses, seen = spied_run(tiny, tmp_path, monkeypatch, "--torch_compile", "--dynamo_backend", "eager")
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert all(step["compiled"] == [True] * NUM_BLOCKS for step in seen["steps"])
    assert graphs >= 1  # dynamo really captured the blocks' forward
    assert_same_losses(losses, plain_losses, 1e-5)  # the tolerance of test_compile_blocks_compiles_each_block
