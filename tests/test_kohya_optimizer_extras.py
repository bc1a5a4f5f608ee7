"""kohya's optimizer options that a kept library carries (issue 18 point 7): `pytorch_optimizer.<Class>` from the
pytorch-optimizer package, every schedule name of diffusers' and transformers' `get_scheduler` (the two that need a
metric at every step refused with the reason), and `--fused_backward_pass` with Adafactor.

Breaks these tests catch (each was made once and failed them):
- library/registries/optimizers/__init__.py without the `is_pytorch_optimizer` branch: a wrong-case name loses its
  "Did you mean" (the dotted-path fallback still builds CAME);
- library/registries/optimizers/pytorch_optimizer.py `schedule_free` always False: ScheduleFreeAdamW accepts cosine;
- library/registries/schedulers/transformers_schedules.py `_min_lr_kwargs` without `/ 2` on num_cycles, or the
  ratio dropped: the cosine_warmup_with_min_lr formula test; without the `"min_lr" in kw` rule: its min_lr case;
- library/registries/schedulers/__init__.py without the refused entries: the library-names test;
- library/registries/optimizers/fused_backward.py `_step_one` without its `param.grad = None`: the parity test (the
  gradients are not freed); without a `problems` line: the refusal test. (Adafactor's update is invariant to the
  gradient's scale, so the per-parameter clip kohya applies cannot show in its result.)
- `_step_one` without its `torch.where(finite, ...)`: a NaN gradient reaches the weights (the NaN test);
- library/trainer.py without its `enable_fused_backward` line: no parameter steps inside backward (the step count);
  the loop's step left as a no-op with no hooks registered: the fused LoRA no longer equals the normal one.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import pytest
import pytorch_optimizer
import torch
from _tiny_run import one_image_dataset, state_dict_of, tiny_model, train
from diffusers.optimization import SchedulerType as DiffusersSchedule
from transformers.optimization import Adafactor
from transformers.trainer_utils import SchedulerType as TransformersSchedule

from library.anima.args import add_anima_arguments
from library.args import build_parser, parse_args
from library.errors import ConfigError
from library.registries import validate_registries
from library.registries.optimizers import build_optimizer
from library.registries.optimizers.fused_backward import enable_fused_backward
from library.registries.schedulers import SCHEDULERS, build_lr_scheduler

PARSER = build_parser("test")
add_anima_arguments(PARSER)


def make_args(*argv: str) -> argparse.Namespace:
    return parse_args(PARSER, list(argv))


def one_step(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter, grad: torch.Tensor) -> torch.Tensor:
    param.grad = grad.clone()
    optimizer.step()
    return param.detach().clone()


def test_a_pytorch_optimizer_class_steps_as_the_package_s_own() -> None:
    args = make_args("--optimizer_type", "pytorch_optimizer.CAME", "--learning_rate", "1e-3",
                     "--optimizer_args", "weight_decay=0.1", "betas=(0.9,0.99,0.999)")
    validate_registries(args)
    ours, theirs = torch.nn.Parameter(torch.ones(4, 3)), torch.nn.Parameter(torch.ones(4, 3))
    bundle = build_optimizer(args, [{"params": [ours]}])
    reference = pytorch_optimizer.CAME([theirs], lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99, 0.999))
    assert type(bundle.optimizer) is pytorch_optimizer.CAME
    for seed in range(3):
        grad = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(one_step(bundle.optimizer, ours, grad), one_step(reference, theirs, grad))
    assert not torch.equal(ours, torch.ones(4, 3))


def test_pytorch_optimizer_names_are_checked_at_start_up() -> None:
    with pytest.raises(ConfigError, match="no optimizer 'Came'.*Did you mean `pytorch_optimizer.CAME`"):
        validate_registries(make_args("--optimizer_type", "pytorch_optimizer.Came"))
    with pytest.raises(ConfigError, match="schedule-free and needs --lr_scheduler constant"):
        validate_registries(make_args("--optimizer_type", "pytorch_optimizer.ScheduleFreeAdamW",
                                      "--lr_scheduler", "cosine"))


def test_every_schedule_name_of_diffusers_and_transformers_is_ours() -> None:
    names = {s.value for s in DiffusersSchedule} | {s.value for s in TransformersSchedule}
    assert names <= set(SCHEDULERS.names())
    for name in ("reduce_lr_on_plateau", "greedy"):
        with pytest.raises(ConfigError, match=f"--lr_scheduler {name} is not supported: it changes the learning "
                                              f"rate from a metric.*cosine_with_min_lr"):
            validate_registries(make_args("--lr_scheduler", name))


@pytest.mark.parametrize("extra,floor", [(("--lr_scheduler_min_lr_ratio", "0.1"), 0.1),
                                         (("--lr_scheduler_args", "min_lr=0.0005", "warmup_lr_rate=0.2"), 0.5)])
def test_cosine_warmup_with_min_lr_follows_its_formula(extra: tuple[str, ...], floor: float) -> None:
    """Warmup: linear from warmup_lr_rate (default 1/warmup, from step 1) to 1; then half a cosine (kohya's
    num_cycles=1) down to the floor, written out here."""
    args = make_args("--lr_scheduler", "cosine_warmup_with_min_lr", "--lr_warmup_steps", "4", *extra)
    validate_registries(args)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1e-3)
    scheduler = build_lr_scheduler(args, optimizer, 20)
    warmup_start = 0.2 if "warmup_lr_rate=0.2" in extra else None
    for step in range(20):
        if step < 4:
            factor = (step + 1) / 4 if warmup_start is None else warmup_start + (1 - warmup_start) * step / 3
        else:
            progress = (step - 4 + 1) / 16
            factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        assert math.isclose(scheduler.get_last_lr()[0], 1e-3 * factor, rel_tol=1e-9), step
        optimizer.step()
        scheduler.step()


def test_fused_backward_steps_each_parameter_as_adafactor_and_frees_its_gradient() -> None:
    args = make_args("--optimizer_type", "AdaFactor", "--fused_backward_pass", "--max_grad_norm", "0.5",
                     "--optimizer_args", "relative_step=False", "scale_parameter=False", "warmup_init=False",
                     "--learning_rate", "0.01")
    validate_registries(args)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    reference_model = copy.deepcopy(model)
    bundle = build_optimizer(args, [{"params": list(model[0].parameters())},
                                    {"params": list(model[1].parameters()), "lr": 0.02}])
    enable_fused_backward(args, bundle.optimizer)
    reference = Adafactor([{"params": list(reference_model[0].parameters())},
                           {"params": list(reference_model[1].parameters()), "lr": 0.02}],
                          lr=0.01, relative_step=False, scale_parameter=False, warmup_init=False)
    for seed in range(3):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
        (model(x) ** 2).mean().backward()
        assert all(p.grad is None for p in model.parameters())  # stepped and freed inside backward
        bundle.optimizer.step()  # the loop's step: nothing left to do
        (reference_model(x) ** 2).mean().backward()
        for param in reference_model.parameters():
            torch.nn.utils.clip_grad_norm_([param], 0.5)  # kohya clips each parameter's gradient alone
        reference.step()
        reference.zero_grad()
        for ours, theirs in zip(model.parameters(), reference_model.parameters(), strict=True):
            assert torch.allclose(ours, theirs, atol=1e-7), seed


def test_a_nan_gradient_leaves_the_weights_as_they_were_under_fused_backward() -> None:
    args = make_args("--optimizer_type", "AdaFactor", "--fused_backward_pass", "--optimizer_args",
                     "relative_step=False", "--learning_rate", "0.01")
    model = torch.nn.Linear(4, 2)
    before = [p.detach().clone() for p in model.parameters()]
    bundle = build_optimizer(args, [{"params": list(model.parameters())}])
    enable_fused_backward(args, bundle.optimizer)
    (model(torch.ones(1, 4)).sum() * float("nan")).backward()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    model(torch.ones(1, 4)).sum().backward()
    assert not torch.equal(model.weight, before[0])  # a finite one steps


@pytest.mark.parametrize("extra,said", [
    (("--optimizer_type", "AdamW"), "got --optimizer_type AdamW"),
    (("--optimizer_type", "AdaFactor", "--gradient_accumulation_steps", "2"), "got --gradient_accumulation_steps 2"),
    (("--optimizer_type", "AdaFactor", "--mixed_precision", "fp16"), "got --mixed_precision fp16"),
    (("--optimizer_type", "AdaFactor", "--nonfinite_loss", "skip"), "got --nonfinite_loss skip"),
])
def test_fused_backward_is_refused_where_it_would_be_wrong(extra: tuple[str, ...], said: str) -> None:
    with pytest.raises(ConfigError, match=f"--fused_backward_pass steps each parameter inside backward.*{said}"):
        validate_registries(make_args("--fused_backward_pass", *extra))


def test_a_fused_backward_run_trains_the_lora_a_normal_adafactor_run_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without clipping, stepping inside backward is the same computation as stepping after it."""
    from library.registries.optimizers import fused_backward

    steps = []
    real_step = fused_backward._step_one
    monkeypatch.setattr(fused_backward, "_step_one", lambda *a: steps.append(1) or real_step(*a))
    tiny = tiny_model(tmp_path / "tiny")
    dataset = one_image_dataset(tiny, tmp_path)
    common = ("--optimizer_type", "AdaFactor", "--optimizer_args", "relative_step=False", "scale_parameter=False",
              "warmup_init=False", "--max_grad_norm", "0", "--max_train_steps", "3")
    normal = train(tiny, tmp_path / "normal", *common, dataset=dataset)
    fused = train(tiny, tmp_path / "fused", *common, "--fused_backward_pass", dataset=dataset)
    assert len(steps) == 3 * (40 * 2 + 24)  # each step: every LoRA down/up and norm-scale tensor, inside backward
    start = train(tiny, tmp_path / "start", *common[:-1], "1", "--learning_rate", "0", dataset=dataset)
    a, b = (state_dict_of(out / "anima_tiny_lora.safetensors") for out in (normal, fused))
    untrained = state_dict_of(start / "anima_tiny_lora.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(a[k], untrained[k]) for k in a)  # it did train
