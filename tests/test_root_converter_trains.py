"""An old root-style config, converted with tools/convert_anima_root_to_kohya.py, trains as it is (issue 10)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import toml
from _tiny_run import REPO, reset_accelerate, tiny_model
from safetensors.torch import load_file

sys.path.insert(0, str(REPO / "tools"))
import convert_anima_root_to_kohya as converter  # noqa: E402  (a script folder, not a package)

OLD = """
[model]
transformer_path = "{tiny}/models/anima_tiny.safetensors"
vae_path = "{tiny}/models/qwen_image_vae_tiny.safetensors"
text_encoder_path = "{tiny}/models/qwen3_tiny.safetensors"
t5_tokenizer_path = "{tiny}/models/t5_tokenizer"

[dataset]
data_dir = "{tiny}/dataset"
resolution = 64
min_reso = 32
max_reso = 128
reso_step = 16
repeats = 1
caption_extension = ".txt"
cache_latents = true

[lora]
network_type = "lora"
lora_rank = 4
lora_alpha = 4

[training]
max_steps = 3
batch_size = 2
learning_rate = 1e-3
mixed_precision = "fp32"
seed = 3
num_workers = 0

[output]
output_dir = "out"
output_name = "converted"
save_every = 1
"""


BUCKET_LINES = ("min_reso = 32\n", "max_reso = 128\n", "reso_step = 16\n")


@pytest.mark.parametrize("buckets", ["given", "defaulted"])
def test_a_converted_root_config_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str], buckets: str) -> None:
    """"defaulted": the old file sets no bucket sizes, so the old trainer's defaults apply, but never a
    min_bucket_reso above the resolution (caught: the default 512 above resolution 64, which cannot train)."""
    from anima_train_network import main

    tiny = tiny_model(tmp_path / "tiny")
    old = tmp_path / "old.toml"
    text = OLD.format(tiny=tiny.as_posix())
    if buckets == "defaulted":
        for line in BUCKET_LINES:
            text = text.replace(line, "")
    old.write_text(text, encoding="utf-8")
    assert converter.main(["--input", str(old), "--output_dir", str(tmp_path / "kohya")]) == 0
    train_args = toml.load(tmp_path / "kohya" / "train_args.toml")
    assert train_args["save_every_n_epochs"] == 1 and train_args["network_dim"] == 4
    dataset = toml.load(tmp_path / "kohya" / "dataset.toml")["datasets"][0]
    assert dataset["min_bucket_reso"] <= dataset["resolution"] <= dataset["max_bucket_reso"]

    reset_accelerate()
    try:
        main(["--config_file", str(tmp_path / "kohya" / "train_args.toml")])
    finally:
        reset_accelerate()
    out = Path(train_args["output_dir"])
    assert out.is_absolute() and out.parent == tmp_path  # relative paths resolved against the old file's folder
    lora = load_file(str(out / "converted.safetensors"))
    assert lora and all(key.startswith("diffusion_model.") for key in lora)
    assert "training finished: 3 steps" in capsys.readouterr().out
