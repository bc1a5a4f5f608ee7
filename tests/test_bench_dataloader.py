"""The data-loader bench on a tiny setting: it returns every figure, and with latents cached no image is opened.
No timing is asserted (2 shared cores)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import dataloader as bench  # noqa: E402


def test_bench_returns_both_figures_and_never_decodes_with_caches() -> None:
    threads = torch.get_num_threads()
    result = bench.run_bench(count=8, size=64, batch_size=2, repeats=1)
    assert result.samples == 8
    assert result.opens_uncached == 8 and result.opens_cached == 0
    assert result.uncached > 0 and result.cached_ram > 0 and result.cached_disk > 0
    assert result.ratio_ram == pytest.approx(result.cached_ram / result.uncached)
    assert torch.get_num_threads() == threads  # restored for whatever runs next
    assert Image.open.__name__ == "open"  # the counting wrapper is gone


def test_bench_reads_a_given_folder(tmp_path: Path) -> None:
    folder = bench.make_images(tmp_path / "mine", 3, 64, seed=1)
    assert sorted(p.name for p in folder.iterdir())[:2] == ["img0000.jpg", "img0000.txt"]
    result = bench.run_bench(data=folder, size=64, repeats=2)
    assert result.samples == 3 and result.opens_uncached == 6 and result.opens_cached == 0
    assert not list(folder.glob("*latents*")), "disk caches must not be written beside the user's images"


def test_counter_sees_decodes_and_stand_in_encoder_shape(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(image)
    with bench.count_image_opens() as opens:
        Image.open(image).close()
    assert opens == [1]
    assert bench.stand_in_encode(torch.zeros(2, 3, 64, 32)).shape == (2, 16, 8, 4)


def test_a_decode_with_caches_fails_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode_anyway(batch: dict) -> None:
        Image.open(batch["image_keys"][0]).close()

    monkeypatch.setattr(bench, "_needs_latents", decode_anyway)
    with pytest.raises(AssertionError, match="images were opened with latents cached"):
        bench.run_bench(count=2, size=64, repeats=1)
