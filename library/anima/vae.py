"""The Qwen-Image VAE as the DiT sees it: pixels in [-1, 1] <-> normalised 16-channel latents.

We wrap diffusers' `AutoencoderKLQwenImage` (an independent, tested implementation) and only add what it
lacks for Anima: loading the released single file in original Wan names without a hub config (the config
is read from the shapes, so a tiny VAE loads through the same path), single-frame handling (T = 1) and the
per-channel latent normalisation of anima-model.md §6 (`latents_mean` / `latents_std` of the config).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLQwenImage
from safetensors import safe_open

from library.anima import vae_keys
from library.anima.detect import describe, read_header
from library.errors import ModelFileError

EXPECTED = "a Qwen-Image / Wan 2.1 VAE (qwen_image_vae.safetensors or a diffusers VAE folder)"
LATENT_CHANNELS = 16


def _file_error(path: str | Path, found: str) -> ModelFileError:
    return ModelFileError(str(path), EXPECTED, found, "Pass the Qwen-Image VAE with --vae.")


def _load_folder(folder: Path, dtype: torch.dtype, device: str | torch.device) -> AutoencoderKLQwenImage:
    subfolder = None if (folder / "config.json").is_file() else "vae"
    config_path = folder / (subfolder or ".") / "config.json"
    if not config_path.is_file():
        raise _file_error(folder, describe(folder))
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("z_dim", LATENT_CHANNELS) != LATENT_CHANNELS or config.get("is_residual", False):
        raise _file_error(folder, f"a {config.get('_class_name', 'VAE')} with z_dim {config.get('z_dim')}")
    vae = AutoencoderKLQwenImage.from_pretrained(folder, subfolder=subfolder, torch_dtype=dtype)
    return vae.to(device)


def _load_file(path: Path, dtype: torch.dtype, device: str | torch.device) -> AutoencoderKLQwenImage:
    try:
        tensors, _ = read_header(path)
    except (OSError, ValueError) as error:
        raise _file_error(path, f"no readable safetensors file ({error})") from error
    shapes = {key: info.shape for key, info in tensors.items()}
    diffusers_names = vae_keys.DIFFUSERS_MARKER in shapes
    if not diffusers_names and vae_keys.ORIGINAL_MARKER not in shapes:
        raise _file_error(path, describe(path))
    if diffusers_names:
        rename = vae_keys.diffusers_to_original_map(shapes, vae_keys.diffusers_num_res_blocks(shapes))
        shapes = {rename[key]: shape for key, shape in shapes.items()}
    try:
        layout = vae_keys.infer_layout(shapes)
    except (ValueError, KeyError) as error:
        raise _file_error(path, f"a Wan-style VAE whose layout does not read ({error})") from error
    if layout.z_dim != LATENT_CHANNELS:
        raise _file_error(path, f"a VAE with {layout.z_dim} latent channels (Anima's has {LATENT_CHANNELS})")
    with torch.device("meta"):
        vae = AutoencoderKLQwenImage(**layout.diffusers_kwargs())
    wanted = {key: tuple(p.shape) for key, p in vae.state_dict().items()}
    to_file = (
        {key: key for key in wanted}
        if diffusers_names
        else vae_keys.diffusers_to_original_map(wanted, layout.num_res_blocks)
    )
    missing = [to_file[k] for k in wanted if to_file[k] not in tensors or tensors[to_file[k]].shape != wanted[k]]
    unexpected = sorted(set(tensors) - set(to_file.values()))
    if missing or unexpected:
        raise _file_error(
            path, f"a VAE with missing or misshapen tensors {missing[:3]} and unexpected tensors {unexpected[:3]}"
        )
    state = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key, file_key in to_file.items():
            state[key] = handle.get_tensor(file_key).to(device=device, dtype=dtype)
    vae.load_state_dict(state, strict=True, assign=True)
    return vae


class AnimaVAE:
    """A frozen VAE with Anima's latent convention: (B, 3, H, W) pixels <-> (B, 16, H/8, W/8) latents."""

    def __init__(self, vae: AutoencoderKLQwenImage) -> None:
        self.vae = vae.eval().requires_grad_(False)
        shape = (1, LATENT_CHANNELS, 1, 1)
        self.latents_mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(shape)
        self.latents_std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(shape)

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> AnimaVAE:
        """From the original single file (Wan names), a diffusers-named file, or a diffusers folder."""
        target = Path(path)
        if not target.exists():
            raise ModelFileError(str(path), EXPECTED, "nothing at that path", "Check the --vae path.")
        vae = _load_folder(target, dtype, device) if target.is_dir() else _load_file(target, dtype, device)
        return cls(vae)

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    @property
    def device(self) -> torch.device:
        return self.vae.device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> AnimaVAE:
        """Only the arguments given reach diffusers (an explicit dtype=None makes it warn about casting)."""
        moves = {key: value for key, value in (("device", device), ("dtype", dtype)) if value is not None}
        self.vae.to(**moves)
        return self

    def enable_tiling(self, tile_pixels: int | None = None) -> None:
        """diffusers' spatial tiling: large images in bounded memory, at a small cost in seams; `tile_pixels` is the
        tile side (stride 3/4 of it), diffusers' default when None."""
        if tile_pixels is None:
            self.vae.enable_tiling()
        else:
            stride = max(8, tile_pixels * 3 // 4)
            self.vae.enable_tiling(tile_pixels, tile_pixels, stride, stride)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1], H and W multiples of 8 -> normalised latents (B, 16, H/8, W/8).

        Uses the posterior mean, as kohya, ComfyUI and diffusion-pipe do; `chunk_size` bounds the batch
        that goes through the VAE at once.
        """
        if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[2] % 8 or pixels.shape[3] % 8:
            raise ValueError(f"expected pixels (B, 3, H, W) with H, W multiples of 8, got {tuple(pixels.shape)}")
        outs = []
        for chunk in pixels.split(chunk_size or pixels.shape[0]):
            x = chunk.to(device=self.device, dtype=self.dtype).unsqueeze(2)
            outs.append(self.vae.encode(x).latent_dist.mode().squeeze(2))
        latents = torch.cat(outs).float()
        mean, std = self.latents_mean.to(latents.device), self.latents_std.to(latents.device)
        return ((latents - mean) / std).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Normalised latents (B, 16, h, w) -> pixels (B, 3, 8h, 8w) clamped to [-1, 1]."""
        if latents.ndim != 4 or latents.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"expected latents (B, {LATENT_CHANNELS}, h, w), got {tuple(latents.shape)}")
        outs = []
        for chunk in latents.split(chunk_size or latents.shape[0]):
            z = chunk.float().to(self.device)
            z = z * self.latents_std.to(z.device) + self.latents_mean.to(z.device)
            outs.append(self.vae.decode(z.to(self.dtype).unsqueeze(2)).sample.squeeze(2))
        return torch.cat(outs).clamp(-1.0, 1.0)
