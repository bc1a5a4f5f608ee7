"""Each timestep sampler's distribution matches its formula (a Kolmogorov-Smirnov test that could fail)."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from library.anima.args import add_anima_arguments
from library.args import build_parser, parse_args
from library.registries.timesteps import TIMESTEP_SAMPLERS, sample_sigmas

_PARSER = build_parser("test")
add_anima_arguments(_PARSER)


def make_args(*argv: str) -> argparse.Namespace:
    return parse_args(_PARSER, list(argv))


N = 20000
KS_LIMIT = 1.95 / math.sqrt(N)  # Kolmogorov-Smirnov critical value at alpha = 0.001


def _ks(samples: torch.Tensor, cdf) -> float:  # noqa: ANN001 - a function of a tensor
    x = samples.double().sort().values
    empirical = torch.arange(1, len(x) + 1, dtype=torch.float64) / len(x)
    model = cdf(x)
    return max((empirical - model).abs().max().item(), (empirical - 1 / len(x) - model).abs().max().item())


def _logit(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x) - torch.log1p(-x)


def _unshift(x: torch.Tensor, k: float) -> torch.Tensor:
    return x / (k - (k - 1) * x)


def _draw(*argv: str, hw: tuple[int, int] = (128, 128)) -> torch.Tensor:
    sigmas = sample_sigmas(make_args(*argv), N, hw, "cpu", torch.Generator().manual_seed(1))
    assert sigmas.shape == (N,) and sigmas.dtype == torch.float32
    assert float(sigmas.min()) >= 0 and float(sigmas.max()) <= 1
    return sigmas


def _flux_k(hw: tuple[int, int]) -> float:
    tokens = (hw[0] // 2) * (hw[1] // 2)
    return math.exp(0.5 + (1.15 - 0.5) * (tokens - 256) / (4096 - 256))


CASES = {
    "uniform": (("--timestep_sampling", "uniform"), lambda x: x),
    "sigmoid": (("--sigmoid_scale", "1.3"), lambda x: torch.special.ndtr(_logit(x) / 1.3)),
    "logit_normal": (
        ("--timestep_sampling", "logit_normal", "--logit_mean", "0.4", "--logit_std", "0.8"),
        lambda x: torch.special.ndtr((_logit(x) - 0.4) / 0.8),
    ),
    "shift": (
        ("--timestep_sampling", "shift", "--discrete_flow_shift", "3"),
        lambda x: torch.special.ndtr(_logit(_unshift(x, 3.0))),
    ),
    "uniform_shift": (("--timestep_sampling", "uniform_shift", "--discrete_flow_shift", "2.5"),
                      lambda x: _unshift(x, 2.5)),
    "flux_shift": (
        ("--timestep_sampling", "flux_shift"),
        lambda x: torch.special.ndtr(_logit(_unshift(x, _flux_k((128, 128))))),
    ),
    # sigma: σ = shift(1 − floor(1000u)/1000), u logit-normal; the 1/1000 grid adds at most 0.001 of CDF error
    "sigma": (
        (
            "--timestep_sampling",
            "sigma",
            "--weighting_scheme",
            "logit_normal",
            "--logit_mean",
            "0.5",
            "--discrete_flow_shift",
            "2",
        ),
        lambda x: 1 - torch.special.ndtr(_logit(1 - _unshift(x, 2.0)) - 0.5),
    ),
}


def test_every_sampler_has_a_distribution_test() -> None:
    assert set(CASES) == set(TIMESTEP_SAMPLERS.names())


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_matches_its_formula(name: str) -> None:
    argv, cdf = CASES[name]
    samples = _draw(*argv)
    assert _ks(samples, cdf) < KS_LIMIT + (0.002 if name == "sigma" else 0.0)
    assert _ks(samples, lambda x: x if name != "uniform" else x**1.2) > 3 * KS_LIMIT  # the test can fail


def test_flux_shift_grows_with_resolution() -> None:
    small, large = _draw("--timestep_sampling", "flux_shift", hw=(32, 32)), _draw("--timestep_sampling", "flux_shift")
    assert small.mean() < large.mean()


def test_sampling_is_reproducible_from_the_generator() -> None:
    args = make_args()
    first = sample_sigmas(args, 8, (16, 16), "cpu", torch.Generator().manual_seed(3))
    assert torch.equal(first, sample_sigmas(args, 8, (16, 16), "cpu", torch.Generator().manual_seed(3)))


# ---- losses and weightings ----------------------------------------------------------------------------------
