"""A steady-state training step waits on the device once: the NaN guard's flag, read together with the stop signal
(issue 19 point 4). Step losses are read every `--logging_every_n_steps` steps, all at once.

There is no GPU here, so the test tracks which tensors a real run would hold on the device: parameters, what is
moved or made with a `device`, and every result of an op on one of those (a TorchFunctionMode). Reading such a
tensor on the host (`.item()`, `.tolist()`, `float()`, `bool()`, `.cpu()`, `.numpy()`, `.to("cpu")`) is what makes
the host wait for the GPU; each read is recorded with the line of our code that asked for it, and the steps
between reads are counted by the optimizer steps.

Breaks this catches (each tried once, each failed): `_micro_step` returning `float(loss.detach())` again (a read
per micro-batch); `run_per_context_length` grouping `t5_mask.to(context.device)` (a read per step in
conditioning.py); `StepReadout.due` always true (the losses read every step); the collated text moved to the
device before `build_context` (its mask check becomes a device read).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny_run import REPO, one_image_dataset, tiny_model, train
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from library.train_loop import TrainLoop

READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
         torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__}
READ_FLAGS = "library/nonfinite.py:read_flags"
TAKE = "library/step_readout.py:take"
EVERY, STEPS, ACCUMULATE = 3, 9, 2


def _our_caller() -> str:
    """`path:function` of the innermost frame in this repository's code (not torch's, not this test's)."""
    frame = sys._getframe(2)
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(REPO) and not {"tests", ".venv"} & set(path.relative_to(REPO).parts):
            return f"{path.relative_to(REPO).as_posix()}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


class DeviceReads(TorchFunctionMode):
    """Marks the tensors a GPU run would hold on the device and records every host read of one."""

    def __init__(self, loop_step: Any) -> None:
        super().__init__()
        self.loop_step = loop_step
        self.on_device: set[int] = set()  # ids of live tensors; kept alive in `self.keep` so ids are not reused
        self.keep: list[torch.Tensor] = []
        self.reads: dict[int, list[str]] = defaultdict(list)  # optimizer steps done -> reads in that window

    def _device(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and (isinstance(value, torch.nn.Parameter) or id(value) in self.on_device)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inputs, _ = tree_flatten((args, kwargs))
        from_device = any(self._device(value) for value in inputs)
        to_cpu = func is torch.Tensor.to and "cpu" in inputs
        if from_device and (func in READS or to_cpu):
            self.reads[self.loop_step()].append(_our_caller())
        result = func(*args, **kwargs)
        # `device="cpu"` as a string is how torch's own code asks for a host tensor; the trainer passes torch.device
        placed = any(isinstance(v, torch.device) for v in inputs)
        if placed and func is torch.Tensor.to and result is args[0]:
            result = result.clone()  # on a GPU the moved tensor is a new one; here `.to` would return the host one
        if (from_device or placed) and not to_cpu and func not in READS:
            given = {id(value) for value in inputs if isinstance(value, torch.Tensor)}
            for out in tree_flatten(result)[0]:  # new tensors only: a regrouped input keeps its own place
                if isinstance(out, torch.Tensor) and id(out) not in given:
                    self.on_device.add(id(out))
                    self.keep.append(out)
        return result


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> dict[int, list[str]]:
    work = tmp_path_factory.mktemp("reads")
    tiny = tiny_model(work / "tiny")
    holder: dict[str, DeviceReads] = {}
    original = TrainLoop.run

    def run_watched(loop: TrainLoop) -> None:
        holder["mode"] = DeviceReads(lambda: loop.global_step)
        with holder["mode"]:
            original(loop)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainLoop, "run", run_watched)
        train(tiny, work / "out", "--max_train_steps", str(STEPS), "--logging_every_n_steps", str(EVERY),
              "--gradient_accumulation_steps", str(ACCUMULATE), "--log_with", "tensorboard",
              "--logging_dir", str(work / "logs"), dataset=one_image_dataset(tiny, work))
    return holder["mode"].reads


def test_a_steady_step_reads_the_device_once_and_the_losses_every_n_steps(reads: dict[int, list[str]]) -> None:
    steady = range(1, STEPS - 1)  # the windows after step 1 (first-step set-up) and before the last (final saves)
    for done in steady:
        expected = [READ_FLAGS] + ([TAKE] if done % EVERY == 0 else [])
        assert sorted(reads[done]) == sorted(expected), (done, reads[done])


def test_every_step_loss_still_reaches_the_log(reads: dict[int, list[str]], tmp_path_factory: Any) -> None:
    """Nothing is lost by reading late: the loss CSV has one finite row per step (the final save reads the rest)."""
    import math

    from _tiny_run import read_losses

    out = next(Path(p) for p in tmp_path_factory.getbasetemp().glob("reads*/out"))
    rows = read_losses(out)
    assert [step for step, _ in rows] == list(range(1, STEPS + 1))
    assert all(math.isfinite(loss) for _, loss in rows)
