"""Sample images end to end on tiny models (fp32 CPU): reproducible files, metadata, and no trace in training.

Tiny parts: the golden fixture's Qwen3 (hidden 16) with the bundled tokenizers, a 1-block DiT whose adapter
reads 16-wide Qwen states, and diffusers' Qwen-Image VAE at base_dim 8.
"""

from __future__ import annotations

import contextlib
import random
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from _fixtures import comfy_fixture
from diffusers import AutoencoderKLQwenImage
from PIL import Image

from library.anima.llm_adapter import LLMAdapterConfig
from library.anima.model import AnimaConfig, AnimaDiT
from library.anima.sample_images import (
    encode_sample_prompts,
    sample_file_name,
    sample_images,
    validate_sampling_args,
)
from library.anima.text import AnimaTextEncoder
from library.errors import ConfigError
from library.sample_prompts import load_sample_prompts
from library.trainer import ModelParts

PROMPTS = ("a cat, (red scarf:1.3) --d 5 --s 3 --w 64 --h 64 --l 4 --n blurry\n"
           "a dog --s 2 --w 80 --h 64 --ss K_Euler --l 1\n")


class CpuAccelerator:
    """What sample_images uses of accelerate's Accelerator."""

    device = torch.device("cpu")

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@pytest.fixture(scope="module")
def text_encoder() -> AnimaTextEncoder:
    return AnimaTextEncoder.load(comfy_fixture("tiny_qwen3"))


@pytest.fixture(scope="module")
def models(text_encoder: AnimaTextEncoder) -> ModelParts:
    from library.anima.vae import AnimaVAE

    torch.manual_seed(0)
    adapter = LLMAdapterConfig(source_dim=16, target_dim=32, model_dim=32, num_layers=1, num_heads=2)
    dit = AnimaDiT(AnimaConfig(model_channels=32, num_blocks=1, num_heads=2, adaln_lora_dim=8,
                               crossattn_emb_channels=32, adapter=adapter))
    vae = AnimaVAE(AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                          attn_scales=[], temperal_downsample=[False, True, True]))
    return ModelParts(denoiser=dit, text_encoders=[text_encoder], vae=vae)


def make_args(tmp_path: Path, prompts: str = PROMPTS, **overrides: object) -> Namespace:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text(prompts, encoding="utf-8")
    values = {"sample_prompts": str(prompt_file), "output_dir": str(tmp_path / "out"), "output_name": "run",
              "seed": 100, "sample_sampler": None} | overrides
    return Namespace(**values)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


def test_files_names_sizes_and_metadata(tmp_path: Path, models: ModelParts) -> None:
    written = sample_images(CpuAccelerator(), make_args(tmp_path), None, 500, models, None)
    folder = tmp_path / "out" / "sample"
    # prompt 0 has --d 5; prompt 1 gets --seed + index = 101
    assert written == [folder / "run_000500_00_5.png", folder / "run_000500_01_101.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["run_000500_00_5.png", "run_000500_01_101.png"]
    with Image.open(written[0]) as first, Image.open(written[1]) as second:
        assert first.size == (64, 64) and second.size == (80, 64)
        meta = first.text
        assert meta["prompt"] == "a cat, (red scarf:1.3)" and meta["negative_prompt"] == "blurry"
        assert (meta["seed"], meta["steps"], meta["cfg_scale"], meta["flow_shift"]) == ("5", "3", "4.0", "3.0")
        assert (meta["sampler"], meta["scheduler"], meta["width"], meta["height"]) == ("er_sde", "simple", "64", "64")
        assert second.text["sampler"] == "euler" and second.text["seed"] == "101"  # kohya alias, canonical name


def test_file_name_pattern() -> None:
    assert sample_file_name("run", 3, 999, 1, 42) == "run_e000003_01_42.png"
    assert sample_file_name("run", None, 1234, 12, 7) == "run_001234_12_7.png"
    assert sample_file_name(None, 0, 0, 0, 0) == "e000000_00_0.png"


def test_same_seed_same_image_other_seed_other_image(tmp_path: Path, models: ModelParts) -> None:
    one = sample_images(CpuAccelerator(), make_args(tmp_path / "a"), 1, 0, models, None)
    two = sample_images(CpuAccelerator(), make_args(tmp_path / "b"), 1, 0, models, None)
    other = sample_images(CpuAccelerator(), make_args(tmp_path / "c", PROMPTS.replace("--d 5", "--d 6")),
                          1, 0, models, None)
    assert one[0].name == "run_e000001_00_5.png" and other[0].name == "run_e000001_00_6.png"
    assert np.array_equal(pixels(one[0]), pixels(two[0])) and np.array_equal(pixels(one[1]), pixels(two[1]))
    assert not np.array_equal(pixels(one[0]), pixels(other[0]))
    assert np.array_equal(pixels(one[1]), pixels(other[1]))  # prompt 1's derived seed did not change


def test_cfg_scale_changes_the_image(tmp_path: Path, models: ModelParts) -> None:
    guided = sample_images(CpuAccelerator(), make_args(tmp_path / "a"), 1, 0, models, None)
    plain = sample_images(CpuAccelerator(), make_args(tmp_path / "b", PROMPTS.replace("--l 4", "--l 1")),
                          1, 0, models, None)
    assert not np.array_equal(pixels(guided[0]), pixels(plain[0]))


def test_training_mode_and_global_rng_are_restored(tmp_path: Path, models: ModelParts) -> None:
    dit = models.denoiser
    network = torch.nn.Linear(2, 2)
    seen_training: list[bool] = []

    def spy(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        seen_training.append(module.training)
        torch.rand(1), random.random(), np.random.rand()  # code inside the model may draw from the global RNGs

    hook = dit.register_forward_hook(spy)
    try:
        for training in (True, False):
            dit.train(training)
            network.train(training)
            torch.manual_seed(1234)
            random.seed(1234)
            np.random.seed(1234)
            expected = (torch.rand(3), random.random(), np.random.rand())
            torch.manual_seed(1234)
            random.seed(1234)
            np.random.seed(1234)
            seen_training.clear()
            sample_images(CpuAccelerator(), make_args(tmp_path / str(training)), None, 7, models, network)
            assert seen_training and not any(seen_training)  # rendered in eval mode
            assert dit.training is training and network.training is training
            assert torch.equal(torch.rand(3), expected[0])
            assert random.random() == expected[1] and np.random.rand() == expected[2]
    finally:
        hook.remove()
        dit.eval()


def test_pre_encoded_prompts_render_without_qwen(tmp_path: Path, models: ModelParts,
                                                 text_encoder: AnimaTextEncoder) -> None:
    args = make_args(tmp_path / "live")
    live = sample_images(CpuAccelerator(), args, 2, 0, models, None)
    encoded = encode_sample_prompts(text_encoder, load_sample_prompts(args.sample_prompts))
    assert set(encoded) == {"a cat, (red scarf:1.3)", "blurry", "a dog", ""}
    assert encoded["a cat, (red scarf:1.3)"].t5_weights.max().item() == pytest.approx(1.3)  # weight syntax parsed
    freed = ModelParts(denoiser=models.denoiser, text_encoders=[], vae=models.vae)
    cached = sample_images(CpuAccelerator(), make_args(tmp_path / "cached"), 2, 0, freed, None, encoded=encoded)
    assert [p.name for p in cached] == [p.name for p in live]
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(live, cached, strict=True))
    # a prompt added after Qwen3 was freed is skipped, not fatal
    extra = make_args(tmp_path / "extra", PROMPTS + "a new prompt --w 64 --h 64 --s 1\n")
    assert len(sample_images(CpuAccelerator(), extra, 2, 0, freed, None, encoded=encoded)) == 2


def test_start_up_validation_names_samplers(tmp_path: Path, models: ModelParts) -> None:
    assert len(validate_sampling_args(make_args(tmp_path))) == 2
    assert validate_sampling_args(make_args(tmp_path, sample_prompts=None)) == []
    with pytest.raises(ConfigError, match="'ddim'.*er_sde"):
        validate_sampling_args(make_args(tmp_path, sample_sampler="ddim"))
    with pytest.raises(ConfigError, match="'heun'"):
        validate_sampling_args(make_args(tmp_path, PROMPTS + "x --ss heun\n"))
    missing = make_args(tmp_path, sample_prompts=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="no such file"):
        validate_sampling_args(missing)
    assert sample_images(CpuAccelerator(), missing, 1, 0, models, None) == []  # mid-run: logged, training goes on
