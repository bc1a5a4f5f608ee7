"""Latents and text encodings made in one precision are not reused by a run in another (issue 24 point 8): bf16
latents differ from fp32 ones, so the cache identity holds the precision the VAE and Qwen3 ran in.

Break this catches (run once, it failed): library/anima/network_trainer.py's `latent_cache_identity` without its "dtype"
(the bf16 run reused the fp32 latents: 0 of 1 to encode).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from _tiny_run import one_image_dataset, tiny_model, train


def to_encode(caplog: pytest.LogCaptureFixture, what: str) -> list[int]:
    return [int(n) for n in re.findall(rf"{what} to encode: (\d+) of", caplog.text)]


def test_a_run_in_another_precision_encodes_its_caches_again(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    tiny = tiny_model(tmp_path / "tiny")
    dataset = one_image_dataset(tiny, tmp_path)
    caches = ("--max_train_steps", "1", "--cache_latents_to_disk", "--cache_text_encoder_outputs_to_disk")
    with caplog.at_level(logging.INFO):
        train(tiny, tmp_path / "fp32", *caches, "--mixed_precision", "no", dataset=dataset)
        train(tiny, tmp_path / "fp32_again", *caches, "--mixed_precision", "no", dataset=dataset)
        train(tiny, tmp_path / "bf16", *caches, "--mixed_precision", "bf16", dataset=dataset)
    assert to_encode(caplog, "latents") == [1, 0, 1]
    assert to_encode(caplog, "captions")[-1] >= 1
