"""Sample images during training: prompts file -> PNGs under `<output_dir>/sample/`, without disturbing training.

The trainer decides when; this renders every prompt of `--sample_prompts` and leaves no trace in the run:
the global RNG states (torch CPU/CUDA, Python, NumPy) are restored afterwards and the denoiser and network get
their previous train/eval mode back, so a run with samples trains exactly like one without.

File names are kohya's without the wall-clock timestamp, so the same run writes the same names:
`<output_name>_<e{epoch:06d} | {step:06d}>_<index:02d>_<seed>.png`. The PNG text chunks hold the settings.
A prompt without `--d` gets seed `--seed` (0 if unset) + its index: the same noise at every sampling point,
so the images show what training changed.
"""

from __future__ import annotations

import contextlib
import logging
import random
from argparse import Namespace
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from library.anima.conditioning import build_context, collate_text
from library.anima.sampling import resolve_sampler_name, sample_flow, sampler_names
from library.anima.text import AnimaTextEncoder, TextEncoding
from library.atomic import atomic_path
from library.errors import ConfigError
from library.sample_prompts import SamplePrompt, load_sample_prompts, validate_sample_prompts
from library.trainer import ModelParts

logger = logging.getLogger(__name__)

SIZE_MULTIPLE = 16  # VAE factor 8 x DiT patch 2
MIN_SIZE = 64  # kohya-Anima's floor
SEED_MODULO = 2**64


def validate_sampling_args(args: Namespace) -> list[SamplePrompt]:
    """Start-up check (before models load): the prompt file reads and every sampler it or the CLI names exists."""
    if not getattr(args, "sample_prompts", None):
        return []
    if getattr(args, "sample_sampler", None):
        resolve_sampler_name(args.sample_sampler)
    return validate_sample_prompts(args.sample_prompts, sampler_names())


def encode_sample_prompts(text_encoder: AnimaTextEncoder, prompts: Sequence[SamplePrompt]) -> dict[str, TextEncoding]:
    """Every positive and negative prompt, encoded once with ComfyUI's weight syntax; keyed by the text.

    Called before the trainer frees Qwen3 (text outputs cached), so sampling still works without it. One prompt
    per Qwen3 call, as ComfyUI runs it and as `sample_images` encodes live, so both paths give the same image.
    """
    texts = sorted({p.prompt for p in prompts} | {p.negative_prompt for p in prompts})
    return {text: text_encoder.encode([text], parse_weights=True)[0] for text in texts}


def sample_file_name(output_name: str | None, epoch: int | None, global_step: int, index: int, seed: int) -> str:
    """kohya's name minus the timestamp (reproducible): `[name_]e000001_00_42.png` or `[name_]000500_00_42.png`."""
    prefix = f"{output_name}_" if output_name else ""
    counter = f"e{epoch:06d}" if epoch is not None else f"{global_step:06d}"
    return f"{prefix}{counter}_{index:02d}_{seed}.png"


def image_size(value: int) -> int:
    """Down to a multiple of 16 (a whole number of DiT patches), at least 64, as kohya-Anima does."""
    return max(MIN_SIZE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)


def prompt_seed(prompt: SamplePrompt, base_seed: int | None) -> int:
    return prompt.seed if prompt.seed is not None else ((base_seed or 0) + prompt.index) % SEED_MODULO


@contextlib.contextmanager
def preserved_rng_and_modes(*modules: Any) -> Iterator[None]:
    """Restore every global RNG state and each module's train/eval mode on exit; modules run in eval meanwhile."""
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    modes = [(m, m.training) for m in modules if isinstance(m, torch.nn.Module)]
    try:
        for module, _ in modes:
            module.eval()
        yield
    finally:
        for module, training in modes:
            module.train(training)
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _encoding(text: str, encoded: dict[str, TextEncoding], models: ModelParts) -> TextEncoding | None:
    """The pre-encoded prompt, else a fresh encoding while Qwen3 is loaded, else None."""
    if text in encoded:
        return encoded[text]
    if models.text_encoders:
        encoded[text] = models.text_encoders[0].encode([text], parse_weights=True)[0]
        return encoded[text]
    return None


def _png_info(prompt: SamplePrompt, seed: int, sampler: str, width: int, height: int) -> PngInfo:
    info = PngInfo()
    for key, value in (("prompt", prompt.prompt), ("negative_prompt", prompt.negative_prompt), ("seed", seed),
                       ("steps", prompt.steps), ("cfg_scale", prompt.scale), ("flow_shift", prompt.flow_shift),
                       ("sampler", sampler), ("scheduler", "simple"), ("width", width), ("height", height)):
        info.add_itxt(key, str(value))
    return info


def render_prompt(accelerator: Any, models: ModelParts, prompt: SamplePrompt, cond: TextEncoding,
                  uncond: TextEncoding, seed: int, sampler: str) -> Image.Image:
    """One prompt -> one image: contexts through the (possibly LoRA-patched) adapter, flow sampling, VAE decode."""
    dit, device = models.denoiser, accelerator.device
    width, height = image_size(prompt.width), image_size(prompt.height)
    with accelerator.autocast():  # as in training: a LoRA on the adapter may hold fp32 weights
        contexts = [build_context(dit.llm_adapter, collate_text([e])) for e in (cond, uncond)]
    noise = torch.randn((1, 16, height // 8, width // 8), generator=torch.Generator().manual_seed(seed))
    sampler_rng = torch.Generator().manual_seed((seed + 1) % SEED_MODULO)  # ComfyUI's CPU noise-sampler seed

    def velocity(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        with accelerator.autocast():
            return dit(x.unsqueeze(2), sigma, context).squeeze(2).float()

    latents = sample_flow(velocity, noise.to(device), contexts[0], contexts[1], steps=prompt.steps,
                          scale=prompt.scale, shift=prompt.flow_shift, sampler=sampler, generator=sampler_rng)
    vae_device = models.vae.device
    if vae_device != device:  # the trainer may park the VAE on the CPU once latents are cached
        models.vae.to(device)
    try:
        pixels = models.vae.decode(latents)[0].float()
    finally:
        if vae_device != device:
            models.vae.to(vae_device)
    array = ((pixels + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def sample_images(accelerator: Any, args: Namespace, epoch: int | None, global_step: int, models: ModelParts,
                  network: Any, encoded: dict[str, TextEncoding] | None = None) -> list[Path]:
    """Render every prompt of `args.sample_prompts`; returns the files written. Main process only."""
    if not getattr(args, "sample_prompts", None):
        return []
    try:
        prompts = load_sample_prompts(args.sample_prompts)
    except ConfigError as error:  # checked at start-up; if the file went away since, skip rather than stop
        logger.error("no sample images: %s", error)
        return []
    encoded = dict(encoded or {})
    folder = Path(args.output_dir) / "sample"
    written: list[Path] = []
    logger.info("rendering %d sample image(s) into %s", len(prompts), folder)
    with torch.no_grad(), preserved_rng_and_modes(models.denoiser, network):
        for prompt in prompts:
            cond = _encoding(prompt.prompt, encoded, models)
            uncond = _encoding(prompt.negative_prompt, encoded, models)
            if cond is None or uncond is None:
                logger.warning("sample prompt %d was not encoded before Qwen3 was freed; skipped", prompt.index)
                continue
            try:
                sampler = resolve_sampler_name(prompt.sampler or getattr(args, "sample_sampler", None))
            except ConfigError as error:  # the file changed since start-up: never stop training for a preview
                logger.warning("sample prompt %d: %s Skipped.", prompt.index, error)
                continue
            seed = prompt_seed(prompt, getattr(args, "seed", None))
            image = render_prompt(accelerator, models, prompt, cond, uncond, seed, sampler)
            path = folder / sample_file_name(getattr(args, "output_name", None), epoch, global_step,
                                             prompt.index, seed)
            with atomic_path(path) as tmp:
                image.save(tmp, format="PNG",
                           pnginfo=_png_info(prompt, seed, sampler, image.width, image.height))
            written.append(path)
    return written
