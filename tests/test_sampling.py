"""Flow samplers: ComfyUI's `simple` schedule, the CFG formula, the registry, and samplers that reach the data.

The convergence checks use a data distribution whose exact velocity is known in closed form: every latent
element x0 ~ N(0, s²). Then E[x0 | x_σ] = (1−σ)s² / ((1−σ)²s² + σ²) · x_σ, the probability-flow ODE maps the
noise ε to s·ε, and any correct sampler (ODE or SDE) ends with elements of standard deviation s.
"""

from __future__ import annotations

import pytest
import torch

from library.anima.sampling import (
    SAMPLERS,
    get_sampler,
    guided_velocity,
    sample_flow,
    sampler_names,
    simple_sigmas,
)
from library.errors import ConfigError

DATA_STD = 0.5


def gaussian_velocity(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Exact velocity for x0 ~ N(0, DATA_STD²): v = (x − E[x0 | x]) / σ; the context is ignored."""
    s = sigma.view(-1, 1, 1, 1)
    denoised = (1 - s) * DATA_STD**2 / ((1 - s) ** 2 * DATA_STD**2 + s**2) * x
    return (x - denoised) / s


def context_velocity(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """A stub whose answer depends on x, sigma and the context, so cond and uncond differ."""
    return 0.3 * x + sigma.view(-1, 1, 1, 1) + context.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def test_simple_schedule_is_comfyui_table_indexing() -> None:
    # shift 3: σ(u) = 3u / (1 + 2u) at u = 1, 0.75, 0.5, 0.25 (table[-1], table[-251], table[-501], table[-751])
    assert torch.allclose(simple_sigmas(4, 3.0), torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]), atol=1e-6)
    # shift 1, 3 steps: int(i * 333.33) -> table entries 1000, 667, 334 (of 1..1000) / 1000
    assert torch.allclose(simple_sigmas(3, 1.0), torch.tensor([1.0, 0.667, 0.334, 0.0]), atol=1e-6)
    sigmas = simple_sigmas(30, 3.0)
    assert sigmas.shape == (31,) and bool((sigmas[:-1] > sigmas[1:]).all())


def test_cfg_combines_velocities_by_the_formula() -> None:
    x, sigma = torch.randn(1, 4, 3, 3), torch.tensor([0.7])
    cond, uncond = torch.full((1, 5, 8), 2.0), torch.full((1, 5, 8), -1.0)
    v_c, v_u = context_velocity(x, sigma, cond), context_velocity(x, sigma, uncond)
    for scale in (0.0, 4.0, 7.5):
        assert torch.allclose(guided_velocity(context_velocity, x, sigma, cond, uncond, scale), v_u + scale * (v_c - v_u))
    # contexts of different lengths take two passes and give the same combination
    long_uncond = torch.full((1, 9, 8), -1.0)
    assert torch.allclose(guided_velocity(context_velocity, x, sigma, cond, long_uncond, 4.0), v_u + 4 * (v_c - v_u))


def test_cfg_one_skips_the_unconditional_pass() -> None:
    calls: list[torch.Tensor] = []

    def counting(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        calls.append(context)
        return context_velocity(x, sigma, context)

    x, sigma, cond, uncond = torch.randn(1, 4, 3, 3), torch.tensor([0.5]), torch.ones(1, 5, 8), torch.zeros(1, 5, 8)
    out = guided_velocity(counting, x, sigma, cond, uncond, 1.0)
    assert len(calls) == 1 and calls[0].shape[0] == 1 and torch.equal(calls[0], cond)
    assert torch.equal(out, context_velocity(x, sigma, cond))
    # the whole sampler with scale 1 equals running it with no uncond branch at all, bit for bit
    noise = torch.randn(1, 4, 6, 6)
    common = {"steps": 5, "shift": 3.0, "sampler": "er_sde"}
    with_uncond = sample_flow(context_velocity, noise, cond, uncond, scale=1.0,
                              generator=torch.Generator().manual_seed(1), **common)
    cond_only = sample_flow(context_velocity, noise, cond, None, scale=4.0,
                            generator=torch.Generator().manual_seed(1), **common)
    guided = sample_flow(context_velocity, noise, cond, uncond, scale=4.0,
                         generator=torch.Generator().manual_seed(1), **common)
    assert torch.equal(with_uncond, cond_only)
    assert not torch.allclose(guided, cond_only)


def test_one_euler_step_applies_guided_velocity() -> None:
    noise, cond, uncond = torch.randn(1, 4, 3, 3), torch.ones(1, 5, 8), torch.zeros(1, 5, 8)
    out = sample_flow(context_velocity, noise, cond, uncond, steps=1, scale=3.0, shift=3.0, sampler="euler",
                      generator=torch.Generator())
    sigma = torch.tensor([1.0])
    v = context_velocity(noise, sigma, uncond) + 3.0 * (context_velocity(noise, sigma, cond)
                                                        - context_velocity(noise, sigma, uncond))
    assert torch.allclose(out, noise - v, atol=1e-6)  # x + (0 − 1)·v


def test_registry_names_aliases_and_errors() -> None:
    assert get_sampler("ER_SDE") is SAMPLERS["er_sde"]
    assert get_sampler(None) is SAMPLERS["er_sde"]  # ComfyUI's reference sampler for Anima
    assert get_sampler("euler_a") is SAMPLERS["euler_ancestral"]
    assert get_sampler("k_euler") is SAMPLERS["euler"]
    with pytest.raises(ConfigError, match="ddim.*dpmpp_2m.*er_sde.*euler"):
        get_sampler("ddim")
    assert set(SAMPLERS) <= set(sampler_names())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_reach_the_data_distribution(name: str) -> None:
    """At 300 steps every sampler's output has the data's spread (the first-order ones are ~10% off at 30)."""
    noise = torch.randn(1, 16, 100, 100, generator=torch.Generator().manual_seed(0))
    cond = torch.zeros(1, 1, 1)
    out = sample_flow(gaussian_velocity, noise, cond, None, steps=300, scale=1.0, shift=3.0, sampler=name,
                      generator=torch.Generator().manual_seed(1))
    assert abs(float(out.std()) - DATA_STD) < 0.03 * DATA_STD
    deterministic = name in ("euler", "dpmpp_2m")
    error = float((out - DATA_STD * noise).abs().max())
    if deterministic:  # the ODE maps ε to s·ε
        assert error < 0.05
    else:  # stochastic: same distribution, not the same points
        assert error > 0.1
    again = sample_flow(gaussian_velocity, noise, cond, None, steps=300, scale=1.0, shift=3.0, sampler=name,
                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    if not deterministic:
        other = sample_flow(gaussian_velocity, noise, cond, None, steps=300, scale=1.0, shift=3.0, sampler=name,
                            generator=torch.Generator().manual_seed(2))
        assert not torch.equal(out, other)
