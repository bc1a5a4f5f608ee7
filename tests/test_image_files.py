"""Image files that used to train on silently wrong data (issue 17 point 4).

Mutations these tests catch (each run once, each failed them):
- library/dataset/decoding.py `to_8bit` returning its input (16-bit grey clipped to 99.6 % white by PIL);
- library/dataset/decoding.py `upright` returning its input, or `displayed_size` not swapping width and height;
- library/dataset/sources.py reading captions as "utf-8" instead of "utf-8-sig" (the BOM stays in the caption);
- library/dataset/caching.py `check_latent_cache_names` not called by the trainer (a.png and a.jpg share latents);
- library/dataset/sources.py: the unsupported-images warning removed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from _tiny_run import tiny_model, train
from dataset_util import make_args, make_folder, make_image, write_config
from PIL import Image, ImageOps

from library.dataset import build_dataset_group
from library.dataset.images import load_pixels, read_image_size

ORIENTATION = 0x0112


def _dataset_toml(folder: Path) -> str:
    return (f'[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n'
            f'image_dir = "{folder}"\n')


def test_a_16_bit_grey_gradient_keeps_its_range(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "gradient.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")

    rgb, _ = load_pixels(path, alpha_mask=False)
    pixels = np.asarray(rgb)
    expected = np.round(values / 257.0).astype(np.uint8)  # 16 -> 8 bits: 65535 / 255 = 257
    assert (pixels == expected[..., None]).all()
    assert (pixels == 255).mean() < 0.01


def _patterned(size: tuple[int, int]) -> Image.Image:
    """Every pixel different, so any wrong turn or flip shows."""
    width, height = size
    grid = np.arange(width * height, dtype=np.uint8).reshape(height, width) * 9
    return Image.fromarray(np.stack([grid, 255 - grid, grid // 2], axis=-1), "RGB")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_a_photo_viewer_shows_it(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"photo{orientation}.png"
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    _patterned((4, 3)).save(path, exif=exif)
    with Image.open(path) as stored:
        shown = ImageOps.exif_transpose(stored)  # Pillow's own reading of the tag: the independent reference

    assert read_image_size(path) == shown.size
    rgb, _ = load_pixels(path, alpha_mask=False)
    assert np.array_equal(np.asarray(rgb), np.asarray(shown.convert("RGB")))


def test_a_phone_jpeg_turned_by_its_exif_goes_into_a_portrait_bucket(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored landscape, shown portrait
    Image.new("RGB", (96, 64), (10, 200, 10)).save(path, exif=exif, quality=95)
    assert read_image_size(path) == (64, 96)
    assert load_pixels(path, alpha_mask=False)[0].size == (64, 96)


def test_a_byte_order_mark_is_not_part_of_the_caption_nor_of_dataset_toml(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "train", 1, caption=None)
    (folder / "img0.txt").write_text("\ufeffa red circle", encoding="utf-8")
    config = write_config(tmp_path, _dataset_toml(folder))
    config.write_text("\ufeff" + config.read_text(encoding="utf-8"), encoding="utf-8")

    group = build_dataset_group(make_args(dataset_config=str(config)))
    assert [s.item.caption for s in group.all_samples()] == ["a red circle"]


def test_skipped_gif_files_are_counted_in_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_folder(tmp_path / "train", 1)
    for name in ("anim0.gif", "anim1.gif"):
        Image.new("P", (64, 64)).save(folder / name)
    with caplog.at_level(logging.WARNING):
        group = build_dataset_group(make_args(dataset_config=str(write_config(tmp_path, _dataset_toml(folder)))))
    assert len(group.all_samples()) == 1
    assert "2 files skipped" in caplog.text and ".gif" in caplog.text and "anim0.gif" in caplog.text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def test_two_images_that_would_share_a_latent_cache_file_are_refused_before_loading(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "images"
    make_image(folder / "05_square.png", color=(200, 30, 30))
    make_image(folder / "05_square.jpg", color=(30, 30, 200))
    (folder / "05_square.txt").write_text("a square", encoding="utf-8")
    dataset = write_config(tmp_path, _dataset_toml(folder))

    import anima_train_network

    def no_model_load(*_args: object) -> None:
        raise AssertionError("the models were loaded before the collision was found")

    monkeypatch.setattr(anima_train_network.AnimaNetworkTrainer, "load_target_model", no_model_load)
    with pytest.raises(SystemExit) as exit_info:
        train(tiny, tmp_path / "out", "--cache_latents_to_disk", dataset=dataset)
    assert exit_info.value.code == 2
    assert re.search(r"05_square\.jpg and .*05_square\.png would share the latent cache file", capsys.readouterr().err)
