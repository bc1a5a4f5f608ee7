"""AnimaVAE: loads every layout into the same model diffusers builds, and keeps pixels where they belong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLQwenImage
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from library.anima import vae_keys
from library.anima.vae import AnimaVAE
from library.errors import ModelFileError

# anima-model.md §6, copied by hand so a wrong config default would show
SPEC_MEAN = [
    -0.7571,
    -0.7089,
    -0.9113,
    0.1075,
    -0.1745,
    0.9653,
    -0.1517,
    1.5508,
    0.4134,
    -0.0715,
    0.5517,
    -0.3632,
    -0.1922,
    -0.9497,
    0.2503,
    -0.2921,
]
SPEC_STD = [
    2.8184,
    1.4541,
    2.3275,
    2.6558,
    1.2196,
    1.7708,
    2.6052,
    2.0743,
    3.2687,
    2.1526,
    2.8652,
    1.5579,
    1.6382,
    1.1253,
    2.8251,
    1.9160,
]
TINY = {
    "base_dim": 8,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
}


def to_original(model: AutoencoderKLQwenImage) -> dict[str, torch.Tensor]:
    rename = vae_keys.diffusers_to_original_map(model.state_dict(), model.config.num_res_blocks)
    return {rename[k]: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def reference() -> AutoencoderKLQwenImage:
    torch.manual_seed(0)
    return AutoencoderKLQwenImage(**TINY).eval()


@pytest.fixture(scope="module")
def original_file(reference: AutoencoderKLQwenImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "qwen_image_vae_tiny.safetensors"
    save_file(to_original(reference), str(path))
    return path


def pixels(height: int = 32, width: int = 48, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1)) * 2 - 1


def spec_encode(model: AutoencoderKLQwenImage, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = model.encode(x.unsqueeze(2)).latent_dist.mode().squeeze(2)
    return (z - torch.tensor(SPEC_MEAN).view(1, 16, 1, 1)) / torch.tensor(SPEC_STD).view(1, 16, 1, 1)


def spec_decode(model: AutoencoderKLQwenImage, latents: torch.Tensor) -> torch.Tensor:
    z = latents * torch.tensor(SPEC_STD).view(1, 16, 1, 1) + torch.tensor(SPEC_MEAN).view(1, 16, 1, 1)
    with torch.no_grad():
        return model.decode(z.unsqueeze(2)).sample.squeeze(2).clamp(-1, 1)


def test_single_file_equals_diffusers_own_conversion(reference, original_file) -> None:
    """Our load of the Wan-named file == diffusers' converter + strict load, on encode and decode."""
    ours = AnimaVAE.load(original_file)
    theirs = AutoencoderKLQwenImage(**TINY).eval()
    theirs.load_state_dict(convert_wan_vae_to_diffusers(to_original(reference)), strict=True)
    x = pixels()
    latents = ours.encode(x)
    assert latents.shape == (2, 16, 4, 6)
    assert torch.allclose(latents, spec_encode(theirs, x), atol=1e-5)
    assert torch.allclose(ours.decode(latents), spec_decode(theirs, latents), atol=1e-5)


def test_normalisation_is_the_spec_table(original_file) -> None:
    vae = AnimaVAE.load(original_file)
    assert torch.allclose(vae.latents_mean.flatten(), torch.tensor(SPEC_MEAN))
    assert torch.allclose(vae.latents_std.flatten(), torch.tensor(SPEC_STD))


def test_real_layout_names_match_diffusers_converter() -> None:
    """The reverse map we write with is the exact inverse of diffusers' converter on the real 194 keys."""
    with torch.device("meta"):
        model = AutoencoderKLQwenImage()
    original = to_original(model)
    assert len(original) == 194 and vae_keys.ORIGINAL_MARKER in original
    assert "encoder.head.2.weight" in original and "decoder.upsamples.11.resample.1.weight" in original
    back = convert_wan_vae_to_diffusers(original)
    assert set(back) == set(model.state_dict())
    layout = vae_keys.infer_layout({k: tuple(v.shape) for k, v in original.items()})
    assert layout == vae_keys.WanVAELayout(96, 16, (1, 2, 4, 4), 2, (False, True, True))


def test_other_depths_round_trip_where_diffusers_converter_cannot(tmp_path: Path) -> None:
    """offline-assets.md's tiny VAE (1 res block, other dim_mult) loads through the same path."""
    torch.manual_seed(2)
    config = {"base_dim": 16, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1, "temperal_downsample": [False, True, True]}
    model = AutoencoderKLQwenImage(**config).eval()
    path = tmp_path / "vae.safetensors"
    save_file(to_original(model), str(path))
    ours = AnimaVAE.load(path)
    assert ours.vae.config.num_res_blocks == 1 and list(ours.vae.config.dim_mult) == [1, 2, 2, 2]
    x = pixels(batch=1)
    assert torch.allclose(ours.encode(x), spec_encode(model, x), atol=1e-5)


def test_diffusers_folder_pipeline_folder_and_diffusers_named_file(reference, tmp_path: Path) -> None:
    reference.save_pretrained(tmp_path / "vae_folder")
    reference.save_pretrained(tmp_path / "pipeline" / "vae")
    named = tmp_path / "diffusers_names.safetensors"
    save_file({k: v.clone() for k, v in reference.state_dict().items()}, str(named))
    x = pixels(batch=1)
    expected = spec_encode(reference, x)
    for path in (tmp_path / "vae_folder", tmp_path / "pipeline", named):
        assert torch.allclose(AnimaVAE.load(path).encode(x), expected, atol=1e-5), path


def test_batch_chunks_and_dtype(original_file) -> None:
    vae = AnimaVAE.load(original_file)
    x = pixels(batch=3)
    assert torch.allclose(vae.encode(x, chunk_size=1), vae.encode(x), atol=1e-5)
    half = AnimaVAE.load(original_file, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.encode(x[:1]).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 30, 32))


def passthrough_state(
    model: AutoencoderKLQwenImage, carrier: float = 10.0, head: float = 0.01
) -> dict[str, torch.Tensor]:
    """Weights under which the VAE is 8x average-pooling followed by nearest upsampling.

    Residual and attention branches are zeroed (identity blocks); RGB rides in channels 0-2 next to a constant
    `carrier` channel 3 that keeps the channel-RMS norms of the heads almost linear; causal 3-D convs use the
    current-frame tap; down-convs average 2x2, up-convs copy; the heads work near 0, where SiLU is x/2, and undo that slope.
    """
    state = {}
    for name, p in model.state_dict().items():
        w = torch.zeros_like(p)
        if name.endswith("gamma"):
            w.fill_(head * carrier / p.shape[0] ** 0.5)  # normalised output ~ head * x
        elif name.endswith(("conv_in.weight", "conv_shortcut.weight", "quant_conv.weight", "conv_out.weight")):
            gain = 2.0 / head if name.endswith("conv_out.weight") else 1.0
            channels = 3 if "conv_in" in name or "conv_out" in name else min(p.shape[:2])
            for c in range(channels):  # the current (last) time tap, the spatial centre
                w[(c, c, p.shape[2] - 1, *(s // 2 for s in p.shape[3:]))] = gain
        elif name.endswith("conv_in.bias"):
            w[3] = carrier
        elif name.endswith("resample.1.weight") and name.startswith("encoder"):
            for c in range(p.shape[0]):
                w[c, c, :2, :2] = 0.25
        elif name.endswith("resample.1.weight"):
            for c in range(p.shape[0]):
                w[c, c, 1, 1] = 1.0
        state[name] = w
    return state


def test_encode_decode_keeps_the_picture(tmp_path: Path) -> None:
    """Through a pass-through VAE, decode(encode(x)) must be x at 1/8 resolution: position, colour, range."""
    model = AutoencoderKLQwenImage(**TINY).eval()
    model.load_state_dict(passthrough_state(model), strict=True)
    path = tmp_path / "passthrough.safetensors"
    save_file(to_original(model), str(path))
    image = Image.new("RGB", (96, 64), (30, 60, 200))
    ImageDraw.Draw(image).ellipse((8, 8, 48, 48), fill=(220, 30, 30))
    x = torch.tensor(list(image.getdata()), dtype=torch.float32).view(64, 96, 3).permute(2, 0, 1)[None] / 127.5 - 1
    vae = AnimaVAE.load(path)
    latents = vae.encode(x)
    assert latents.shape == (1, 16, 8, 12)
    out = vae.decode(latents)
    pooled = torch.nn.functional.avg_pool2d(x, 8)
    expected = torch.nn.functional.interpolate(pooled, scale_factor=8, mode="nearest")
    assert out.shape == x.shape
    assert (out - expected).abs().max() < 0.05  # a missing de-normalisation alone gives ~0.5
    correlation = torch.corrcoef(torch.stack([out.flatten(), x.flatten()]))[0, 1]
    assert correlation > 0.9


@pytest.mark.parametrize(
    ("tensors", "found"),
    [
        (
            {"net.blocks.0.mlp.layer1.weight": torch.zeros(8, 4), "net.x_embedder.proj.1.weight": torch.zeros(4, 68)},
            "Anima DiT",
        ),
        (
            {
                "model.layers.0.post_attention_layernorm.weight": torch.zeros(4),
                "model.layers.0.self_attn.q_norm.weight": torch.zeros(2),
                "model.embed_tokens.weight": torch.zeros(9, 4),
            },
            "Qwen3 text encoder",
        ),
        ({"diffusion_model.blocks.0.self_attn.q_proj.lora_down.weight": torch.zeros(4, 8)}, "LoRA adapter"),
    ],
)
def test_wrong_files_name_what_they_are(tmp_path: Path, tensors: dict, found: str) -> None:
    path = tmp_path / "wrong.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(ModelFileError, match=found) as info:
        AnimaVAE.load(path)
    assert "--vae" in str(info.value) and str(path) in str(info.value)


def test_unreadable_and_missing_paths(tmp_path: Path) -> None:
    text = tmp_path / "notes.safetensors"
    text.write_text("hello", encoding="utf-8")
    with pytest.raises(ModelFileError, match="safetensors"):
        AnimaVAE.load(text)
    with pytest.raises(ModelFileError, match="nothing at that path"):
        AnimaVAE.load(tmp_path / "absent.safetensors")
    wan22 = tmp_path / "wan22"
    wan22.mkdir()
    (wan22 / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", "z_dim": 48}), encoding="utf-8")
    with pytest.raises(ModelFileError, match="z_dim 48"):
        AnimaVAE.load(wan22)
