"""Broken dataset configs and datasets: each fails before any model loads, with a message naming the culprit."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from dataset_util import make_args, make_folder, write_config
from PIL import Image

from library.dataset import build_dataset_group
from library.dataset.blueprint import load_blueprint
from library.errors import ConfigError

GOOD_HEAD = '[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\n'


def build(tmp_path: Path, text: str, **args):
    config = write_config(tmp_path, text)
    return build_dataset_group(make_args(dataset_config=str(config), **args))


def subset(folder: Path, extra: str = "") -> str:
    return f'[[datasets.subsets]]\nimage_dir = "{folder.as_posix()}"\n{extra}\n'


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "img", 2)


# (name, config text given the image folder, regex the message must match)
CASES = [
    ("unknown key at subset, nearest", lambda d: GOOD_HEAD + subset(d, "num_repeat = 2"),
     r"datasets\[0\]\.subsets\[0\].*unknown key 'num_repeat'.*Did you mean 'num_repeats'"),
    ("unknown key at general", lambda d: '[general]\nshufle_caption = true\n[[datasets]]\nresolution = 64\n'
     + subset(d), r"general: unknown key 'shufle_caption'.*'shuffle_caption'"),
    ("unknown key at dataset", lambda d: GOOD_HEAD + "batchsize = 2\n" + subset(d),
     r"datasets\[0\]: unknown key 'batchsize'.*'batch_size'"),
    ("unknown top-level table", lambda d: GOOD_HEAD + subset(d) + "[dataset]\nx = 1\n",
     r"top level: unknown key 'dataset'.*'datasets'"),
    ("subset key at dataset level", lambda d: GOOD_HEAD + f'image_dir = "{d.as_posix()}"\n' + subset(d),
     r"datasets\[0\]: key 'image_dir' is not allowed here; it belongs in \[\[datasets.subsets\]\]"),
    ("dataset key at subset level", lambda d: GOOD_HEAD + subset(d, "batch_size = 2"),
     r"subsets\[0\]: key 'batch_size' is not allowed here"),
    ("wrong type int", lambda d: GOOD_HEAD + subset(d, 'num_repeats = "ten"'),
     r"subsets\[0\]: key 'num_repeats': expected an integer, found a string \('ten'\)"),
    ("wrong type bool", lambda d: GOOD_HEAD + subset(d, "flip_aug = 1"),
     r"key 'flip_aug': expected true or false, found an integer"),
    ("wrong type float", lambda d: GOOD_HEAD + subset(d, 'caption_dropout_rate = "0.1"'),
     r"key 'caption_dropout_rate': expected a number"),
    ("wrong type string", lambda d: GOOD_HEAD + subset(d, "caption_prefix = 3"),
     r"key 'caption_prefix': expected a string"),
    ("bad resolution", lambda d: '[[datasets]]\nresolution = [1, 2, 3]\n' + subset(d), r"key 'resolution'"),
    ("bad interpolation", lambda d: GOOD_HEAD + subset(d, 'resize_interpolation = "fancy"'),
     r"resize_interpolation.*\"fancy\" is not a valid interpolation"),
    ("dropout out of range", lambda d: GOOD_HEAD + subset(d, "caption_dropout_rate = 1.5"),
     r"caption_dropout_rate' must be between 0.0 and 1.0"),
    ("bad batch size", lambda d: '[[datasets]]\nresolution = 64\nbatch_size = 0\n' + subset(d), r"batch_size"),
    ("datasets not array", lambda d: '[datasets]\nresolution = 64\n', r"datasets"),
    ("no subsets", lambda d: '[[datasets]]\nresolution = 64\n', r"datasets\[0\] has no \[\[datasets.subsets\]\]"),
    ("mixed dreambooth fine-tuning", lambda d: GOOD_HEAD + subset(d)
     + f'[[datasets.subsets]]\nmetadata_file = "{(d / "m.json").as_posix()}"\n',
     r"DreamBooth subset and fine tuning subset cannot be mixed"),
    ("missing image_dir", lambda d: GOOD_HEAD + "[[datasets.subsets]]\nnum_repeats = 2\n",
     r"subsets\[0\]: required key 'image_dir' not provided"),
    ("dreambooth key in fine-tuning", lambda d: '[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n'
     f'metadata_file = "{(d / "m.json").as_posix()}"\nclass_tokens = "sks"\n',
     r"key 'class_tokens' is for DreamBooth subsets"),
    ("conditioning without --masked_loss", lambda d: GOOD_HEAD + subset(d, 'conditioning_data_dir = "x"'),
     r"conditioning_data_dir"),
    ("missing folder", lambda d: GOOD_HEAD + subset(d.parent / "nope"),
     r"subsets\[0\]: image_dir '.*nope' not found"),
    ("image_dir is a file", lambda d: GOOD_HEAD + subset(d / "img0.png"), r"img0.png' is a file, not a folder"),
    ("missing resolution for dreambooth", lambda d: '[[datasets]]\n' + subset(d), r"resolution is required"),
    ("metadata_file missing", lambda d: '[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n'
     f'metadata_file = "{(d / "none.json").as_posix()}"\n', r"metadata_file not found: .*none.json"),
    ("bucket steps not multiple of 16", lambda d: '[[datasets]]\nresolution = 64\nenable_bucket = true\n'
     "bucket_reso_steps = 24\nmin_bucket_reso = 48\n" + subset(d),
     r"bucket_reso_steps is 24. it must be divisible by 16.*bucket_reso_steps = 32"),
    ("min bucket above resolution", lambda d: '[[datasets]]\nresolution = 64\nenable_bucket = true\n'
     "min_bucket_reso = 128\nmax_bucket_reso = 256\n" + subset(d), r"min_bucket_reso must be equal or less"),
    ("max bucket below resolution", lambda d: '[[datasets]]\nresolution = 512\nenable_bucket = true\n'
     "min_bucket_reso = 64\nmax_bucket_reso = 256\n" + subset(d), r"max_bucket_reso must be equal or greater"),
    ("unbucketed image too large", lambda d: '[[datasets]]\nresolution = 32\n' + subset(d),
     r"image too large, but cropping and bucketing are disabled: .*img0.png"),
    ("unbucketed image too small", lambda d: '[[datasets]]\nresolution = 128\n' + subset(d),
     r"image size is small: .*img0.png"),
    ("unbucketed resolution not multiple", lambda d: '[[datasets]]\nresolution = 60\n' + subset(d),
     r"resolution \(60, 60\) must be a multiple of 16"),
    ("all repeats zero", lambda d: GOOD_HEAD + subset(d, "num_repeats = 0"), r"No data found.*img \(num_repeats 0\)"),
]


@pytest.mark.parametrize("name,text,pattern", CASES, ids=[c[0] for c in CASES])
def test_broken_config_names_culprit(tmp_path, data, name, text, pattern):
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=pattern):
        build(tmp_path, text(data))
    assert snapshot(tmp_path) - before <= {"dataset.toml"}  # nothing written anywhere, incl. the output dir
    assert not list(out.iterdir())


def test_schema_errors_name_the_file(tmp_path, data):
    with pytest.raises(ConfigError, match=r"dataset.toml: datasets\[0\]\.subsets\[0\]"):
        build(tmp_path, GOOD_HEAD + subset(data, "flip_aug = 1"))


def test_config_file_missing_or_wrong_format(tmp_path):
    with pytest.raises(ConfigError, match="file not found: .*nothere.toml"):
        build_dataset_group(make_args(dataset_config=str(tmp_path / "nothere.toml")))
    bad = write_config(tmp_path, "a: 1", "d.yaml")
    with pytest.raises(ConfigError, match="not supported config file format"):
        build_dataset_group(make_args(dataset_config=str(bad)))
    broken = write_config(tmp_path, "[[datasets]\nresolution = 1", "broken.toml")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        build_dataset_group(make_args(dataset_config=str(broken)))


def test_empty_folder_is_no_data_naming_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"No data found.*empty"):
        build(tmp_path, GOOD_HEAD + subset(empty))


def test_empty_folder_beside_a_good_one_is_a_warning(tmp_path, data, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    group = build(tmp_path, GOOD_HEAD + subset(data) + subset(empty))
    assert group.num_train_images == 2
    assert "no images found" in caplog.text and "empty" in caplog.text


def test_zero_repeats_subset_ignored_with_warning(tmp_path, data, caplog):
    other = make_folder(tmp_path / "other", 1)
    group = build(tmp_path, GOOD_HEAD + subset(data, "num_repeats = 0") + subset(other))
    assert group.num_train_images == 1
    assert "num_repeats is less than 1" in caplog.text and "img" in caplog.text


def test_image_without_caption_uses_class_tokens_with_notice(tmp_path, caplog):
    folder = make_folder(tmp_path / "nocap", 2, caption=None)
    caplog.set_level(logging.INFO)
    group = build(tmp_path, GOOD_HEAD + subset(folder, 'class_tokens = "sks dog"'))
    assert group[0]["captions"] == ["sks dog"]
    assert "class_tokens 'sks dog'" in caplog.text


def test_image_without_caption_or_class_tokens_warns(tmp_path, caplog):
    folder = make_folder(tmp_path / "nocap", 1, caption=None)
    (folder / "img0.caption").write_text("wrong ext", encoding="utf-8")
    group = build(tmp_path, '[[datasets]]\nresolution = 64\n' + subset(folder, 'caption_extension = "txt"'))
    assert group[0]["captions"] == [""]
    assert "No caption file found for 1 images" in caplog.text and "img0.png" in caplog.text
    assert 'caption_extension = ".caption"' in caplog.text


def test_empty_caption_file_warns(tmp_path, caplog):
    folder = make_folder(tmp_path / "e", 1, caption="")
    build(tmp_path, GOOD_HEAD + subset(folder))
    assert "caption files are empty" in caplog.text and "img0.txt" in caplog.text


def test_non_utf8_caption_names_file(tmp_path):
    folder = make_folder(tmp_path / "u", 1, caption=None)
    (folder / "img0.txt").write_bytes(b"\xff\xfe\xfa bad")
    with pytest.raises(ConfigError, match=r"img0.txt: illegal char in file \(not UTF-8\)"):
        build(tmp_path, GOOD_HEAD + subset(folder))


def test_truncated_png_names_file(tmp_path):
    folder = make_folder(tmp_path / "t", 1)
    image = folder / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(image)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=r"big.png: cannot read this image"):
        build(tmp_path, GOOD_HEAD + subset(folder))


def test_truncated_jpeg_names_file(tmp_path):
    folder = make_folder(tmp_path / "j", 1)
    image = folder / "photo.jpg"
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(noise).save(image, quality=95)
    image.write_bytes(image.read_bytes()[:-5000])
    with pytest.raises(ConfigError, match=r"photo.jpg: this JPEG is truncated"):
        build(tmp_path, GOOD_HEAD + subset(folder))


def test_not_an_image_names_file(tmp_path):
    folder = make_folder(tmp_path / "n", 1)
    (folder / "fake.png").write_text("hello", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"fake.png: cannot read this image"):
        build(tmp_path, GOOD_HEAD + subset(folder))


def test_finetune_missing_image_names_key(tmp_path, data):
    meta = tmp_path / "meta.json"
    meta.write_text('{"ghost.png": {"caption": "x"}}', encoding="utf-8")
    text = f'[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nmetadata_file = "{meta.as_posix()}"\n' \
           f'image_dir = "{data.as_posix()}"\n'
    with pytest.raises(ConfigError, match=r"image 'ghost.png' listed in .*meta.json not found"):
        build(tmp_path, text)


def test_finetune_relative_key_needs_image_dir(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text('{"img0.png": {"caption": "x"}}', encoding="utf-8")
    text = f'[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nmetadata_file = "{meta.as_posix()}"\n'
    with pytest.raises(ConfigError, match="image_dir is required when image paths are relative"):
        build(tmp_path, text)


def test_finetune_bad_json_names_file(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text("{broken", encoding="utf-8")
    text = f'[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nmetadata_file = "{meta.as_posix()}"\n'
    with pytest.raises(ConfigError, match=r"meta.json is not valid JSON"):
        build(tmp_path, text)


def test_no_dataset_at_all():
    with pytest.raises(ConfigError, match="--dataset_config"):
        build_dataset_group(make_args())


def test_train_data_dir_without_repeat_folders(tmp_path):
    make_folder(tmp_path / "root" / "noprefix", 1)
    with pytest.raises(ConfigError, match=r"no '<repeats>_<name>' subfolders"):
        build_dataset_group(make_args(train_data_dir=str(tmp_path / "root"), resolution="64"))


def test_bad_cli_resolution_names_option(tmp_path, data):
    with pytest.raises(ConfigError, match="--resolution"):
        build(tmp_path, "[[datasets]]\n" + subset(data), resolution="big")


def test_int_accepted_where_float_expected_and_fallback_chain(tmp_path, data):
    text = ('[general]\ncaption_dropout_rate = 0\nflip_aug = true\nnum_repeats = 3\n'
            '[[datasets]]\nresolution = [64, 64]\nflip_aug = false\n'
            + subset(data, "flip_aug = true") + subset(make_folder(tmp_path / "b", 1)))
    blueprint = load_blueprint(make_args(dataset_config=str(write_config(tmp_path, text)), train_batch_size=4,
                                         caption_extension=".txt", dataset_repeats=7))
    first, second = blueprint[0].subsets
    assert first.caption_dropout_rate == 0.0 and isinstance(first.caption_dropout_rate, float)
    assert first.flip_aug is True and second.flip_aug is False  # subset > dataset > general
    assert first.num_repeats == 3  # general beats the CLI's --dataset_repeats
    assert blueprint[0].batch_size == 4  # --train_batch_size fills what the file leaves unset
    assert first.caption_extension == ".txt" and first.keep_tokens == 0  # CLI, then default


def test_caption_extension_without_dot_gets_one(tmp_path, data):
    text = '[[datasets]]\nresolution = 64\n' + subset(data, 'caption_extension = "txt"')
    assert load_blueprint(make_args(dataset_config=str(write_config(tmp_path, text))))[0].subsets[0] \
        .caption_extension == ".txt"
