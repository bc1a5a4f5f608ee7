"""Cache files corrupted on disk are encoded again (issue 17 point 6): each file's metadata holds a checksum of its
tensors' bytes, so a file whose header and record are intact but whose data changed is stale.

A run writes the latent and text caches of one image to disk; a few bytes of a float tensor in each file are then
changed (the values stay finite, so only the checksum can notice). The next run must warn about both files,
encode them again and train exactly as it did on the fresh caches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_run import one_image_dataset, state_dict_of, tiny_model, train

from library.cache.latents import LatentSpec, is_valid, save_latents

NAME = "anima_tiny_lora"
CACHES = ("--cache_latents_to_disk", "--cache_text_encoder_outputs_to_disk", "--max_train_steps", "2")


def corrupt_floats(file: Path) -> None:
    """XOR 0x3F into the mantissa of the first 64 values of the file's largest float32 tensor; the header (and so
    the file's record) is untouched and every value stays finite."""
    data = bytearray(file.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_size])
    header.pop("__metadata__", None)
    begin, end = max((entry["data_offsets"] for entry in header.values() if entry["dtype"] == "F32"),
                     key=lambda offsets: offsets[1] - offsets[0])
    start = 8 + header_size + begin
    for value in range(min(64, (end - begin) // 4)):
        data[start + 4 * value + 1] ^= 0x3F
    file.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def test_corrupted_cache_files_are_encoded_again(tiny: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Catches: library/cache/latents.py without `and _data_intact(path, spec.required())`, or library/cache/text.py
    without `and checksum.matches(...)` (the corrupted file is trusted: no warning, another LoRA)."""
    dataset = one_image_dataset(tiny, tmp_path / "data")
    fresh = train(tiny, tmp_path / "fresh", *CACHES, dataset=dataset)
    folder = tmp_path / "data" / "one_image"
    # both text files (the caption's and the "" of dropped captions): encoded again together, in one batch, as at
    # first (the text encoder pads a batch to its longest caption, so a caption encoded alone differs a little)
    files = sorted(folder.glob("*_latents.safetensors")) + sorted(folder.glob("te_*.safetensors"))
    assert len(files) == 3
    for file in files:
        corrupt_floats(file)
    caplog.clear()
    again = train(tiny, tmp_path / "again", *CACHES, dataset=dataset)
    for file in files:
        assert f"cache file {file}: the data of" in caplog.text and "does not match its checksum" in caplog.text
    assert "latents to encode: 1 of 1" in caplog.text and "captions to encode: 2 of 2" in caplog.text
    first, second = state_dict_of(fresh / f"{NAME}.safetensors"), state_dict_of(again / f"{NAME}.safetensors")
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_a_file_rewritten_for_another_bucket_keeps_a_corrupted_bucket_stale(tmp_path: Path) -> None:
    """Adding a bucket rewrites the file with the tensors it read back. Catches: library/cache/latents.py
    checksumming every tensor it writes (`checksums_text(tensors)`), which would bless the corrupted one."""
    image = tmp_path / "a.png"
    image.write_bytes(b"not read: only its size and mtime are recorded")
    identity = {"vae": "test"}
    small, large = (LatentSpec((64, 64), (64, 64), None, False, False),
                    LatentSpec((96, 64), (96, 64), None, False, False))
    file = tmp_path / "a_latents.safetensors"
    save_latents(file, image, identity, small, torch.randn(4, 8, 8))
    assert is_valid(file, image, identity, small)
    corrupt_floats(file)
    save_latents(file, image, identity, large, torch.randn(4, 8, 12))
    assert is_valid(file, image, identity, large) and not is_valid(file, image, identity, small)
