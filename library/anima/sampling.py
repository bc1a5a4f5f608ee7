"""Flow-matching samplers for sample images, following ComfyUI's formulas for Anima (a CONST / FLOW model).

ComfyUI is where users run the LoRA, so previews use its reference recipe (anima-model.md §8.2): the `simple`
schedule of `ModelSamplingDiscreteFlow` (shift 3) and `er_sde`, CFG 4. Facts used (ComfyUI `comfy/samplers.py`,
`comfy/model_sampling.py`, `comfy/k_diffusion/sampling.py`):
- the model's sigma table is σ(k/1000), k = 1..1000, σ(u) = shift·u / (1 + (shift−1)·u); `simple` takes
  `table[-(1 + int(i * 1000 / steps))]` for i < steps, then 0;
- for a flow model, denoised = x − σ·v, and every sampler below steps on denoised like ComfyUI's k-diffusion
  samplers do (`euler`: x + (σ_next − σ)·(x − denoised)/σ = x + (σ_next − σ)·v);
- CFG combines v = v_u + s·(v_c − v_u) (ComfyUI does it on denoised, which is the same since denoised is affine
  in v); s == 1 skips the unconditional branch, as ComfyUI's cfg1 optimisation does.
Random numbers come from a caller's `torch.Generator` only, on the CPU, so a seed gives the same image on any
device and sampling never touches the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from library.anima.flow import shift_sigmas
from library.errors import ConfigError

TABLE_SIZE = 1000
DEFAULT_SAMPLER = "er_sde"

# (x (B, C, h, w) fp32, sigma (B,) fp32, context (B, N, D)) -> velocity (B, C, h, w) fp32
VelocityModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (x, sigma) -> denoised x0 estimate
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def flow_sigma_table(shift: float) -> torch.Tensor:
    """ComfyUI's `ModelSamplingDiscreteFlow.sigmas` (multiplier 1): ascending, fp32, last entry 1."""
    return shift_sigmas(torch.arange(1, TABLE_SIZE + 1) / TABLE_SIZE, shift)


def simple_sigmas(steps: int, shift: float) -> torch.Tensor:
    """ComfyUI's `simple` scheduler: `steps` evenly spaced table entries from the top, then 0 (steps + 1 values)."""
    table = flow_sigma_table(shift)
    stride = len(table) / steps
    picked = [float(table[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.tensor(picked + [0.0], dtype=torch.float32)


def guided_velocity(model: VelocityModel, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor,
                    uncond: torch.Tensor | None, scale: float) -> torch.Tensor:
    """v_u + scale·(v_c − v_u); only the conditional pass when scale is 1 or there is no uncond context."""
    if uncond is None or math.isclose(scale, 1.0):
        return model(x, sigma, cond)
    if cond.shape == uncond.shape:  # one batched pass, as ComfyUI batches cond and uncond
        v_cond, v_uncond = model(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([cond, uncond])).chunk(2)
    else:
        v_cond, v_uncond = model(x, sigma, cond), model(x, sigma, uncond)
    return v_uncond + scale * (v_cond - v_uncond)


def _noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=torch.float32, device=generator.device).to(x)


def sample_euler(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], generator: torch.Generator,
                 shift: float) -> torch.Tensor:
    """First-order flow ODE step: x + (σ_next − σ)·v."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        denoised = denoise(x, sigma)
        x = x + (x - denoised) / sigma * (sigma_next - sigma)
    return x


def sample_euler_ancestral(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], generator: torch.Generator,
                           shift: float) -> torch.Tensor:
    """ComfyUI's `sample_euler_ancestral_RF` (eta 1): step down below σ_next, then renoise up to it."""
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
            continue
        sigma_down = sigma_next * sigma_next / sigma  # downstep ratio 1 + (σ_next/σ − 1)·eta with eta = 1
        alpha_next, alpha_down = 1.0 - sigma_next, 1.0 - sigma_down
        renoise = math.sqrt(max(0.0, sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2))
        ratio = sigma_down / sigma
        x = ratio * x + (1.0 - ratio) * denoised
        x = (alpha_next / alpha_down) * x + _noise(x, generator) * renoise
    return x


def sample_dpmpp_2m(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], generator: torch.Generator,
                    shift: float) -> torch.Tensor:
    """ComfyUI's `sample_dpmpp_2m` (DPM-Solver++(2M), t = −log σ), deterministic."""
    old_denoised = None
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            if old_denoised is not None:
                r = (math.log(sigmas[i - 1]) - math.log(sigma)) / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            else:
                denoised_d = denoised
            x = (sigma_next / sigma) * x - math.expm1(-h) * denoised_d
        old_denoised = denoised
    return x


def _er_noise_scaler(value: float) -> float:
    """ComfyUI's default ER-SDE noise scaler x·(e^(x^0.3) + 10)."""
    return value * (math.exp(value**0.3) + 10.0)


def sample_er_sde(denoise: Denoiser, x: torch.Tensor, sigmas: list[float], generator: torch.Generator,
                  shift: float, max_stage: int = 3, points: int = 200) -> torch.Tensor:
    """ComfyUI's `sample_er_sde` (VP ER-SDE-Solver-3, arXiv 2309.06169) for a flow model, s_noise 1.

    For flow, α = 1 − σ and the solver's λ = σ/α. σ = 1 (λ infinite) is first moved to the table value at
    percent 1e-4, as ComfyUI's `offset_first_sigma_for_snr` does. The integrals of stages 2 and 3 are ComfyUI's
    200-point Riemann sums. Coefficients are computed in float64.
    """
    sigmas = list(sigmas)
    if sigmas[0] >= 1.0:
        sigmas[0] = float(shift_sigmas(torch.tensor(1.0 - 1e-4, dtype=torch.float64), shift))
    lambdas = [s / (1.0 - s) for s in sigmas]
    old_denoised = old_denoised_d = None
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = lambdas[i], lambdas[i + 1]
        alpha_s, alpha_t = 1.0 - sigmas[i], 1.0 - sigmas[i + 1]
        r = _er_noise_scaler(lam_t) / _er_noise_scaler(lam_s)
        x = (alpha_t / alpha_s) * r * x + alpha_t * (1.0 - r) * denoised
        if stage >= 2:
            dt = lam_t - lam_s
            step = -dt / points
            positions = [lam_t + k * step for k in range(points)]
            integral = sum(1.0 / _er_noise_scaler(p) for p in positions) * step
            denoised_d = (denoised - old_denoised) / (lam_s - lambdas[i - 1])
            x = x + alpha_t * (dt + integral * _er_noise_scaler(lam_t)) * denoised_d
            if stage >= 3:
                integral_u = sum((p - lam_s) / _er_noise_scaler(p) for p in positions) * step
                denoised_u = (denoised_d - old_denoised_d) / ((lam_s - lambdas[i - 2]) / 2)
                x = x + alpha_t * (dt**2 / 2 + integral_u * _er_noise_scaler(lam_t)) * denoised_u
            old_denoised_d = denoised_d
        x = x + alpha_t * _noise(x, generator) * math.sqrt(max(0.0, lam_t**2 - lam_s**2 * r**2))
        old_denoised = denoised
    return x


Sampler = Callable[[Denoiser, torch.Tensor, list[float], torch.Generator, float], torch.Tensor]
SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "dpmpp_2m": sample_dpmpp_2m,
    "er_sde": sample_er_sde,
}
# kohya's SD sampler spellings that have a flow version here
ALIASES = {"k_euler": "euler", "euler_a": "euler_ancestral", "k_euler_a": "euler_ancestral",
           "dpmsolver++": "dpmpp_2m"}


def sampler_names() -> list[str]:
    return sorted([*SAMPLERS, *ALIASES])


def resolve_sampler_name(name: str | None) -> str:
    """Canonical sampler name (case-insensitive, kohya aliases allowed); None gives ComfyUI's `er_sde`."""
    key = (name or DEFAULT_SAMPLER).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SAMPLERS:
        raise ConfigError(f"unknown sample sampler {name!r} (--sample_sampler / --ss); "
                          f"choose one of: {', '.join(sampler_names())}.")
    return key


def get_sampler(name: str | None) -> Sampler:
    return SAMPLERS[resolve_sampler_name(name)]


def sample_flow(model: VelocityModel, noise: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None, *,
                steps: int, scale: float, shift: float, sampler: str | None,
                generator: torch.Generator) -> torch.Tensor:
    """Noise (B, C, h, w) -> denoised latents, over the `simple` schedule; sampler noise from `generator`."""
    sigmas = simple_sigmas(steps, shift)
    x = noise.float() * sigmas[0]  # ComfyUI's CONST.noise_scaling of an empty latent

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma_batch = torch.full((x.shape[0],), sigma, dtype=torch.float32, device=x.device)
        return x - sigma * guided_velocity(model, x, sigma_batch, cond, uncond, scale).float()

    return get_sampler(sampler)(denoise, x, sigmas.tolist(), generator, shift)
