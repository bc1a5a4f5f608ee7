"""Registries: optimizers, LR schedulers, timestep samplers, losses, weightings, and start-up validation."""

from __future__ import annotations

import argparse
import math
import time

import pytest
import torch

from library.anima.args import add_anima_arguments
from library.args import build_parser, parse_args
from library.errors import ConfigError
from library.registries import validate_registries
from library.registries.losses import compute_loss
from library.registries.optimizers import OPTIMIZERS, build_optimizer, check_optimizer_builds
from library.registries.schedulers import build_lr_scheduler
from library.registries.weightings import loss_weighting

_PARSER = build_parser("test")
add_anima_arguments(_PARSER)


def make_args(*argv: str) -> argparse.Namespace:
    return parse_args(_PARSER, list(argv))


# ---- optimizers ---------------------------------------------------------------------------------------------

_LR = {
    "Prodigy": "1.0",
    "SGDNesterov": "0.01",
    "SGDNesterov8bit": "0.01",
    "SGDScheduleFree": "0.1",
    "RAdamScheduleFree": "0.1",
    "Lion": "0.003",
    "Lion8bit": "0.003",
    "PagedLion8bit": "0.003",
}


def _regression_loss(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ weight - y) ** 2).mean()


@pytest.mark.parametrize("name", [*OPTIMIZERS.names(), "RMSprop", "torch.optim.Adagrad"])
def test_each_optimizer_builds_and_lowers_a_regression_loss(name: str) -> None:
    gen = torch.Generator().manual_seed(0)
    x, true_w = torch.randn(64, 256, generator=gen), torch.randn(256, 1, generator=gen)
    y = x @ true_w
    weight = torch.nn.Parameter(torch.zeros(256, 1))
    extra = ["--optimizer_args", "relative_step=False", "scale_parameter=False"] if name == "AdaFactor" else []
    args = make_args("--optimizer_type", name, "--learning_rate", _LR.get(name, "0.01"), *extra)
    bundle = build_optimizer(args, [{"params": [weight]}])
    bundle.train_mode()
    start = _regression_loss(weight, x, y).item()
    for _ in range(40):
        bundle.optimizer.zero_grad()
        _regression_loss(weight, x, y).backward()
        bundle.optimizer.step()
    bundle.eval_mode()
    assert _regression_loss(weight, x, y).item() < 0.9 * start, name


def test_description_is_kohya_ss_optimizer() -> None:
    weight = torch.nn.Parameter(torch.zeros(2))
    bundle = build_optimizer(make_args("--optimizer_args", "weight_decay=0.01"), [{"params": [weight]}])
    assert bundle.description == "torch.optim.adamw.AdamW(weight_decay=0.01)"
    sgd = build_optimizer(make_args("--optimizer_type", "sgdnesterov"), [{"params": [weight]}])
    assert sgd.description == "torch.optim.sgd.SGD(momentum=0.9)" and sgd.optimizer.defaults["nesterov"] is True
    assert build_optimizer(make_args("--use_8bit_adam"), [{"params": [weight]}]).description.endswith("AdamW8bit")


def test_schedule_free_train_eval_switch_changes_params() -> None:
    weight = torch.nn.Parameter(torch.zeros(8))
    bundle = build_optimizer(
        make_args("--optimizer_type", "AdamWScheduleFree", "--learning_rate", "0.1"), [{"params": [weight]}]
    )
    assert bundle.is_schedule_free
    bundle.train_mode()
    for _ in range(5):
        bundle.optimizer.zero_grad()
        ((weight - torch.arange(8.0)) ** 2).sum().backward()
        bundle.optimizer.step()
    train_weights = weight.detach().clone()
    bundle.eval_mode()
    assert not torch.allclose(weight, train_weights)
    bundle.train_mode()
    assert torch.allclose(weight, train_weights, atol=1e-6)
    plain = build_optimizer(make_args(), [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    assert not plain.is_schedule_free


def test_adafactor_relative_step_drops_lrs_and_uses_its_schedule() -> None:
    weight = torch.nn.Parameter(torch.zeros(4))
    args = make_args("--optimizer_type", "AdaFactor", "--learning_rate", "1e-3")
    bundle = build_optimizer(args, [{"params": [weight], "lr": 5e-4}])
    assert bundle.optimizer.defaults["relative_step"] is True and bundle.optimizer.defaults["lr"] is None
    assert type(build_lr_scheduler(args, bundle.optimizer, 10, 1)).__name__ == "AdafactorSchedule"
    fixed = make_args(
        "--optimizer_type", "AdaFactor", "--optimizer_args", "relative_step=False", "scale_parameter=False"
    )
    assert build_optimizer(fixed, [{"params": [weight]}]).optimizer.defaults["lr"] == 2e-6


# ---- schedulers ---------------------------------------------------------------------------------------------


def _lrs(args: argparse.Namespace, steps: int, processes: int = 1) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_lr_scheduler(args, optimizer, steps, processes)
    values = []
    for _ in range(steps * processes):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_linear_with_warmup_ratio_spans_steps_times_processes() -> None:
    lrs = _lrs(make_args("--lr_scheduler", "linear", "--lr_warmup_steps", "10%"), 50, processes=2)
    assert len(lrs) == 100 and lrs[0] == 0.0
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 10  # 10 % of 50 × 2
    assert lrs[55] == pytest.approx(0.5, abs=0.02) and lrs[-1] < 0.02


def test_integer_warmup_is_not_multiplied() -> None:
    lrs = _lrs(make_args("--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "4"), 10, processes=2)
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0]) and set(lrs[4:]) == {1.0}


def test_scheduler_shapes() -> None:
    assert set(_lrs(make_args(), 20)) == {1.0}
    cosine = _lrs(make_args("--lr_scheduler", "cosine"), 100)
    assert cosine[50] == pytest.approx(0.5, abs=0.02) and cosine[-1] < 0.01
    restarts = _lrs(make_args("--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "2"), 100)
    assert restarts[49] < 0.01 and restarts[50] == pytest.approx(1.0)
    poly = _lrs(make_args("--lr_scheduler", "polynomial", "--lr_scheduler_power", "2"), 100)
    assert poly[50] == pytest.approx(0.25, abs=0.02)
    floor = _lrs(make_args("--lr_scheduler", "cosine_with_min_lr", "--lr_scheduler_min_lr_ratio", "0.1"), 100)
    assert floor[-1] == pytest.approx(0.1, abs=0.01)


def test_schedule_free_gets_a_constant_schedule() -> None:
    assert set(_lrs(make_args("--optimizer_type", "RAdamScheduleFree"), 10)) == {1.0}


# ---- timestep samplers --------------------------------------------------------------------------------------


def test_losses() -> None:
    pred, target = torch.tensor([[0.0, 0.01, 10.0]] * 2).view(2, 3, 1, 1, 1), torch.zeros(2, 3, 1, 1, 1)
    sigmas = torch.tensor([0.0, 1.0])
    assert torch.equal(compute_loss(make_args(), pred, target, sigmas), pred**2)
    assert torch.equal(compute_loss(make_args("--loss_type", "l1"), pred, target, sigmas), pred.abs())
    huber = compute_loss(make_args("--loss_type", "huber", "--huber_schedule", "constant"), pred, target, sigmas)
    assert huber.shape == pred.shape
    assert huber[0, 1].item() == pytest.approx(0.01**2, rel=0.01)  # quadratic near 0
    assert huber[0, 2].item() == pytest.approx(2 * 0.1 * 10, rel=0.02)  # 2c|d| far away
    smooth = compute_loss(make_args("--loss_type", "smooth_l1", "--huber_schedule", "constant"), pred, target, sigmas)
    assert smooth[0, 2].item() == pytest.approx(2 * 10, rel=0.02)


@pytest.mark.parametrize(
    ("schedule", "at_zero", "at_one"), [("snr", 1.0, 0.1), ("exponential", 2.0, 0.2), ("constant", 0.2, 0.2)]
)
def test_huber_schedules(schedule: str, at_zero: float, at_one: float) -> None:
    from library.registries.losses.huber_threshold import huber_threshold

    args = make_args("--loss_type", "huber", "--huber_schedule", schedule, "--huber_scale", "2")
    assert huber_threshold(args, torch.tensor([0.0, 1.0])).tolist() == pytest.approx([at_zero, at_one])


def test_weightings() -> None:
    sigmas = torch.tensor([0.25, 0.5])
    assert loss_weighting(make_args(), sigmas) is None
    assert loss_weighting(make_args("--weighting_scheme", "mode"), sigmas) is None
    assert loss_weighting(make_args("--weighting_scheme", "sigma_sqrt"), sigmas).tolist() == pytest.approx([16.0, 4.0])
    assert loss_weighting(make_args("--weighting_scheme", "cosmap"), sigmas)[1].item() == pytest.approx(4 / math.pi)


# ---- start-up validation ------------------------------------------------------------------------------------


def test_validation_of_a_good_configuration_is_fast() -> None:
    args = make_args("--optimizer_type", "AdamW8bit", "--lr_scheduler", "cosine", "--lr_warmup_steps", "0.1")
    validate_registries(args)
    start = time.perf_counter()
    for argv in (
        [],
        ["--optimizer_type", "prodigy"],
        ["--optimizer_type", "Lion8bit"],
        ["--optimizer_type", "adafactor"],
    ):
        validate_registries(make_args(*argv))
    assert time.perf_counter() - start < 0.5


def _namespace(**changes: object) -> argparse.Namespace:
    args = make_args()
    vars(args).update(changes)
    return args


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"optimizer_type": "AdamW9bit"}, r"AdamW8bit.*dotted module\.Class"),
        ({"optimizer_type": "nosuchpkg.Opt"}, "cannot import module 'nosuchpkg'"),
        ({"optimizer_args": ["betas"]}, r"'betas' is not of the form key=value"),
        ({"optimizer_args": ["betas=(0.9,"]}, r"'betas=\(0.9,' is not a Python literal"),
        ({"optimizer_args": ["weight_decy=0.1"]}, r"does not take weight_decy.*weight_decay"),
        ({"lr_scheduler_args": ["x"]}, r"--lr_scheduler_args: 'x'"),
        ({"learning_rate": -1e-4}, "--learning_rate must not be negative"),
        ({"unet_lr": -1.0}, "--unet_lr must not be negative"),
        ({"optimizer_type": "AdamW8bit", "use_8bit_adam": True}, "keep only --optimizer_type"),
        ({"lr_scheduler": "cosinus"}, r"--lr_scheduler: unknown value 'cosinus'. Valid values: constant"),
        ({"lr_warmup_steps": 1.5}, r"--lr_warmup_steps = 1.5 .* below 1"),
        ({"lr_warmup_steps": -2}, "--lr_warmup_steps must be"),
        ({"lr_warmup_steps": 10}, r"--lr_scheduler constant does not take --lr_warmup_steps"),
        (
            {"optimizer_type": "RAdamScheduleFree", "lr_scheduler": "cosine"},
            r"--optimizer_type RAdamScheduleFree.*--lr_scheduler constant",
        ),
        ({"optimizer_type": "adamwschedulefree", "lr_warmup_steps": 5}, r"--lr_warmup_steps 0.*warmup_steps=N"),
        (
            {"optimizer_type": "AdaFactor", "lr_scheduler": "constant_with_warmup", "lr_warmup_steps": 5},
            "relative_step",
        ),
        ({"lr_scheduler": "adafactor"}, "needs --optimizer_type AdaFactor"),
        ({"timestep_sampling": "logit"}, r"Valid values: sigmoid, uniform, shift, flux_shift, sigma, logit_normal"),
        ({"sigmoid_scale": 0.0}, "--sigmoid_scale must be positive"),
        ({"loss_type": "l3"}, r"Valid values: l2, l1, huber, smooth_l1"),
        ({"loss_type": "huber", "huber_c": 0.0}, r"--huber_c must be in \(0, 1\]"),
        ({"loss_type": "huber", "huber_schedule": "linear"}, "Valid values: constant, exponential, snr"),
        ({"weighting_scheme": "cos"}, "Valid values: sigma_sqrt, logit_normal, mode, cosmap, none, uniform"),
    ],
)
def test_bad_names_and_arguments_fail_fast(changes: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_registries(_namespace(**changes))


def test_bad_optimizer_value_is_a_config_error_at_build() -> None:
    args = make_args("--optimizer_args", "betas=(0.9,)")
    with pytest.raises(ConfigError, match=r"rejected --optimizer_args"):
        build_optimizer(args, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])


@pytest.mark.parametrize("name,bad", [("AdamW", "betas=0.9"), ("AdamW8bit", "eps='x'"), ("Prodigy", "betas=0.9"),
                                      ("SGDNesterov", "momentum=-1")])
def test_a_bad_optimizer_value_fails_the_start_up_check(name: str, bad: str) -> None:
    check_optimizer_builds(make_args("--optimizer_type", name))
    with pytest.raises(ConfigError, match=f"--optimizer_type {name} rejected --optimizer_args"):
        check_optimizer_builds(make_args("--optimizer_type", name, "--optimizer_args", bad))
