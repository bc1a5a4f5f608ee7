"""tools/make_tiny_anima.py writes a complete model folder that our loaders and transformers read as real files."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import toml
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoTokenizer, Qwen3Model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import make_tiny_anima  # noqa: E402
from _random_weights import init_tensor, qwen3_shapes, vae_shapes, write_streaming  # noqa: E402
from _tiny_dataset import write_dataset  # noqa: E402

from library.anima import vae_keys  # noqa: E402
from library.anima.loading import load_anima_dit  # noqa: E402
from library.anima.qwen3 import load_qwen3  # noqa: E402
from library.anima.vae import AnimaVAE  # noqa: E402

FILES = (
    "models/anima_tiny.safetensors",
    "models/qwen_image_vae_tiny.safetensors",
    "models/qwen3_tiny.safetensors",
    "models/qwen3_tiny/config.json",
    "models/qwen3_tiny/model.safetensors",
    "models/qwen3_tiny/vocab.json",
    "models/qwen3_tiny/merges.txt",
    "models/qwen3_tiny/tokenizer_config.json",
    "models/t5_tokenizer/spiece.model",
    "train_args.toml",
    "dataset.toml",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "anima_tiny"
    make_tiny_anima.main(["--output_dir", str(out), "--seed", "3"])
    return out


def test_every_file_is_there(folder: Path) -> None:
    missing = [name for name in FILES if not (folder / name).is_file()]
    assert not missing


def test_dit_is_the_official_layout_and_loads(folder: Path) -> None:
    path = folder / "models/anima_tiny.safetensors"
    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in keys}
    assert all(k.startswith("net.") for k in keys) and len(keys) == 89  # anima-model.md §11
    assert shapes["net.llm_adapter.embed.weight"] == (32128, 32)
    assert shapes["net.x_embedder.proj.1.weight"] == (64, 68)
    assert shapes["net.blocks.1.cross_attn.k_proj.weight"] == (64, 32)
    assert shapes["net.final_layer.adaln_modulation.2.weight"] == (128, 16)
    assert shapes["net.llm_adapter.blocks.1.cross_attn.k_proj.weight"] == (32, 16)  # source_dim = Qwen hidden
    model = load_anima_dit(path, torch.float32, "cpu")
    x = torch.randn(1, 16, 1, 8, 8)
    out = model(x, torch.tensor([0.5]), torch.randn(1, 512, 32))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0


def test_vae_is_in_original_names_and_loads(folder: Path) -> None:
    path = folder / "models/qwen_image_vae_tiny.safetensors"
    keys = list(load_file(str(path)))
    assert len(keys) == 194 and vae_keys.ORIGINAL_MARKER in keys and not any("mid_block" in k for k in keys)
    vae = AnimaVAE.load(path)
    image = Image.open(folder / "dataset/01_circle.png").convert("RGB")
    x = torch.tensor(list(image.getdata()), dtype=torch.float32).view(image.height, image.width, 3)
    latents = vae.encode(x.permute(2, 0, 1)[None] / 127.5 - 1)
    assert latents.shape == (1, 16, image.height // 8, image.width // 8)


def test_qwen3_folder_and_single_file_are_the_same_model(folder: Path) -> None:
    single = load_file(str(folder / "models/qwen3_tiny.safetensors"))
    assert all(k.startswith("model.") for k in single) and "lm_head.weight" not in single
    assert single["model.embed_tokens.weight"].shape == (151936, 16)
    hf = Qwen3Model.from_pretrained(str(folder / "models/qwen3_tiny"))
    ours = load_qwen3(folder / "models/qwen3_tiny.safetensors")
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "models/qwen3_tiny"))
    ids = tokenizer("Hello world", return_tensors="pt").input_ids
    assert ids.tolist() == [[9707, 1879]]  # anima-model.md §5.1
    with torch.no_grad():
        a, b = hf(input_ids=ids).last_hidden_state, ours(input_ids=ids).last_hidden_state
    assert torch.allclose(a, b, atol=1e-6)


def test_t5_tokenizer_is_the_bundled_one(folder: Path) -> None:
    bundled = ROOT / "library/anima/assets/t5_tokenizer"
    for item in bundled.iterdir():
        assert (folder / "models/t5_tokenizer" / item.name).read_bytes() == item.read_bytes()


def test_dataset_has_captioned_images_in_three_shapes(folder: Path) -> None:
    images = sorted((folder / "dataset").glob("*.png"))
    captions = [p.with_suffix(".txt").read_text(encoding="utf-8") for p in images]
    assert len(images) == 12 and len(set(captions)) == 4
    assert {Image.open(p).size for p in images} == {(64, 64), (64, 96), (96, 64)}
    assert all(caption.strip() == caption and caption for caption in captions)


def test_tomls_parse_with_absolute_existing_paths(folder: Path) -> None:
    args = toml.load(folder / "train_args.toml")
    for key in ("pretrained_model_name_or_path", "qwen3", "vae", "t5_tokenizer_path", "dataset_config"):
        assert Path(args[key]).is_absolute() and Path(args[key]).exists(), key
    assert args["output_dir"] == str(folder / "output") and args["output_name"] == "anima_tiny_lora"
    assert (args["network_module"], args["network_dim"], args["network_alpha"]) == ("networks.lora_anima", 4, 4.0)
    assert (args["timestep_sampling"], args["discrete_flow_shift"], args["mixed_precision"]) == ("sigmoid", 1.0, "no")
    dataset = toml.load(folder / "dataset.toml")
    assert dataset["general"]["caption_extension"] == ".txt"
    (entry,) = dataset["datasets"]
    assert (entry["resolution"], entry["batch_size"], entry["enable_bucket"]) == (64, 2, True)
    (subset,) = entry["subsets"]
    assert Path(subset["image_dir"]) == folder / "dataset"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_dataset(tmp_path / "a", seed=5)]
    again = [p.read_bytes() for p in write_dataset(tmp_path / "b", seed=5)]
    other = [p.read_bytes() for p in write_dataset(tmp_path / "c", seed=6)]
    assert first == again and first != other
    assert torch.equal(init_tensor("net.a.weight", (3, 4), 1), init_tensor("net.a.weight", (3, 4), 1))
    assert not torch.equal(init_tensor("net.a.weight", (3, 4), 1), init_tensor("net.b.weight", (3, 4), 1))


def test_streaming_writer_writes_bf16_safetensors(tmp_path: Path) -> None:
    shapes = {"model.norm.weight": (8,), "model.embed_tokens.weight": (5, 8), "x.bias": (3,)}
    path = tmp_path / "s.safetensors"
    write_streaming(path, shapes, lambda name, shape: init_tensor(name, shape, 0), torch.bfloat16, {"format": "pt"})
    loaded = load_file(str(path))
    assert set(loaded) == set(shapes)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    for name, shape in shapes.items():
        assert loaded[name].dtype == torch.bfloat16
        assert torch.equal(loaded[name], init_tensor(name, shape, 0).to(torch.bfloat16))
    assert (loaded["model.norm.weight"].float() - 1).abs().max() < 0.5  # norms start near 1


def test_real2b_shape_table_matches_the_spec_counts() -> None:
    """anima-model.md §2.6: 685 DiT tensors / 2,091,068,928 params; Qwen3 310 / 596,049,920; VAE 194 / 126,892,531."""
    dit = make_tiny_anima.real2b_dit_shapes()
    assert len(dit) == 685 and sum(math.prod(s) for s in dit.values()) == 2_091_068_928
    assert all(k.startswith("net.") for k in dit) and dit["net.llm_adapter.embed.weight"] == (32128, 1024)
    size = make_tiny_anima.real2b()
    assert size.dtype == torch.bfloat16
    qwen = qwen3_shapes(size.qwen)
    assert len(qwen) == 310 and sum(math.prod(s) for s in qwen.values()) == 596_049_920
    vae = vae_shapes(size.vae)
    assert len(vae) == 194 and sum(math.prod(s) for s in vae.values()) == 126_892_531
