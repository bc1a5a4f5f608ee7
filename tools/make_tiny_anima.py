"""Write a complete Anima model folder with random weights in the REAL file formats, plus a dataset and TOMLs.

`--size tiny` (default) is what tests and quick trials train on: seconds on a CPU, offline, every module
type of the real model present, real tokenizer ids usable (Qwen vocab 151936, adapter vocab 32128).
`--size real2b` writes the real shapes (2B DiT, Qwen3-0.6B, Qwen-Image VAE) in bf16 for GPU benchmarks,
streaming one tensor at a time.

    python tools/make_tiny_anima.py --output_dir /tmp/anima_tiny
    accelerate launch anima_train_network.py --config_file /tmp/anima_tiny/train_args.toml
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

import _bootstrap  # noqa: F401  (the repository root on sys.path, before any project import)
import toml
import torch
from _random_weights import dit_shapes, init_tensor, qwen3_shapes, random_state, vae_shapes, write_streaming
from _tiny_dataset import write_dataset
from transformers import Qwen3Config

from library.anima.llm_adapter import LLMAdapterConfig
from library.anima.loading import save_anima_dit
from library.anima.model import AnimaConfig
from library.anima.vae_keys import WanVAELayout
from library.atomic import atomic_dir, write_text_atomic

ASSETS = Path(__file__).resolve().parents[1] / "library" / "anima" / "assets"
QWEN_VOCAB = 151936


def qwen3_config(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=QWEN_VOCAB,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_theta": 1_000_000.0, "rope_type": "default"},
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        max_window_layers=layers,
        bos_token_id=151643,
        eos_token_id=151643,
        architectures=["Qwen3ForCausalLM"],
    )


@dataclass(frozen=True)
class Size:
    """Everything that differs between the two sizes."""

    name: str
    dit: AnimaConfig
    qwen: Qwen3Config
    vae: WanVAELayout
    dtype: torch.dtype
    image_scale: int  # images are 64/96 px times this
    resolution: int


def tiny() -> Size:
    """anima-model.md §11 with a 16-wide Qwen3 (as in the golden fixtures): source_dim 16 != model_dim 32."""
    qwen = qwen3_config(hidden=16, intermediate=48, layers=2, heads=4, kv_heads=2, head_dim=8)
    adapter = LLMAdapterConfig(
        source_dim=16, target_dim=32, model_dim=32, num_layers=2, num_heads=2, mlp_ratio=4.0, vocab_size=32128
    )
    dit = AnimaConfig(
        model_channels=64,
        num_blocks=2,
        num_heads=2,
        mlp_ratio=4.0,
        adaln_lora_dim=16,
        crossattn_emb_channels=32,
        adapter=adapter,
    )
    vae = WanVAELayout(
        base_dim=8, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, temperal_downsample=(False, True, True)
    )
    return Size("tiny", dit, qwen, vae, torch.float32, 1, 64)


def real2b() -> Size:
    """The released shapes: anima-model.md §1, §5.1, §6 (the classes' defaults are the real model)."""
    qwen = qwen3_config(hidden=1024, intermediate=3072, layers=28, heads=16, kv_heads=8, head_dim=128)
    vae = WanVAELayout(
        base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, temperal_downsample=(False, True, True)
    )
    return Size("real2b", AnimaConfig(), qwen, vae, torch.bfloat16, 16, 1024)


def real2b_dit_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the 2B DiT file as written by `--size real2b` (685 tensors)."""
    return dit_shapes(real2b().dit)


def _write_dit(path: Path, size: Size, seed: int) -> None:
    shapes = dit_shapes(size.dit)
    if size.name == "tiny":  # small enough to hold: go through the loader's own writer
        save_anima_dit(random_state(shapes, seed, prefix="net."), path)
    else:
        write_streaming(path, shapes, lambda name, shape: init_tensor(name, shape, seed), size.dtype, {"format": "pt"})


def _write_qwen(models: Path, size: Size, seed: int) -> Path:
    """The ComfyUI single file; for tiny also an HF folder (config + the same weights + the bundled tokenizer)."""
    single = models / f"qwen3_{size.name}.safetensors"
    write_streaming(single, qwen3_shapes(size.qwen), lambda name, shape: init_tensor(name, shape, seed), size.dtype)
    if size.name != "tiny":  # a second 1.2 GB copy would only cost disk
        return single
    folder = models / f"qwen3_{size.name}"
    with atomic_dir(folder) as tmp:
        size.qwen.save_pretrained(tmp)
        shutil.copyfile(single, tmp / "model.safetensors")
        for item in (ASSETS / "qwen3_tokenizer").iterdir():
            shutil.copyfile(item, tmp / item.name)
    return single


def _train_args(root: Path, size: Size, dit: Path, qwen: Path, vae: Path, t5: Path) -> dict:
    return {
        "pretrained_model_name_or_path": str(dit),
        "qwen3": str(qwen),
        "vae": str(vae),
        "t5_tokenizer_path": str(t5),
        "dataset_config": str(root / "dataset.toml"),
        "output_dir": str(root / "output"),
        "output_name": f"anima_{size.name}_lora",
        "network_module": "networks.lora_anima",
        "network_dim": 4,
        "network_alpha": 4.0,
        "learning_rate": 1e-3,
        "optimizer_type": "AdamW",
        "lr_scheduler": "constant",
        "max_train_steps": 10,
        "mixed_precision": "no" if size.dtype == torch.float32 else "bf16",
        "seed": 42,
        "timestep_sampling": "sigmoid",
        "discrete_flow_shift": 1.0,
        "cache_latents": True,
        "cache_text_encoder_outputs": True,
        "gradient_checkpointing": size.name != "tiny",
        "max_data_loader_n_workers": 0,
    }


def _dataset_config(root: Path, size: Size) -> dict:
    scale = size.image_scale
    return {
        "general": {"caption_extension": ".txt"},
        "datasets": [
            {
                "resolution": size.resolution,
                "batch_size": 2,
                "enable_bucket": True,
                "min_bucket_reso": 32 * scale,
                "max_bucket_reso": 128 * scale,
                "bucket_reso_steps": 16 if scale == 1 else 64,
                "subsets": [{"image_dir": str(root / "dataset"), "num_repeats": 1}],
            }
        ],
    }


def make(output_dir: str | Path, seed: int = 0, size_name: str = "tiny") -> Path:
    """Write the whole folder; returns its absolute path."""
    root = Path(output_dir).resolve()
    size = tiny() if size_name == "tiny" else real2b()
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    dit = models / f"anima_{size.name}.safetensors"
    _write_dit(dit, size, seed)
    vae = models / f"qwen_image_vae_{size.name}.safetensors"
    write_streaming(vae, vae_shapes(size.vae), lambda name, shape: init_tensor(name, shape, seed), size.dtype)
    qwen_single = _write_qwen(models, size, seed)
    t5 = models / "t5_tokenizer"
    with atomic_dir(t5) as tmp:
        shutil.copytree(ASSETS / "t5_tokenizer", tmp, dirs_exist_ok=True)
    write_dataset(root / "dataset", seed, size.image_scale)
    write_text_atomic(root / "train_args.toml", toml.dumps(_train_args(root, size, dit, qwen_single, vae, t5)))
    write_text_atomic(root / "dataset.toml", toml.dumps(_dataset_config(root, size)))
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output_dir", required=True, help="folder to write models/, dataset/, train_args.toml and dataset.toml into"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and the drawings (default 0)")
    parser.add_argument(
        "--size",
        choices=("tiny", "real2b"),
        default="tiny",
        help="tiny: ~1 M-parameter models for CPU tests (default); real2b: the real shapes in "
        "bf16 with random weights, about 5.6 GB, for GPU benchmarks",
    )
    args = parser.parse_args(argv)
    root = make(args.output_dir, args.seed, args.size)
    print(
        f"wrote {root}; train with: accelerate launch anima_train_network.py --config_file {root / 'train_args.toml'}"
    )


if __name__ == "__main__":
    main()
