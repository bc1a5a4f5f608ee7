"""The batch dataset: buckets never mix, repeats, reg balancing, flips, masks, deterministic order, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from dataset_util import make_args, make_folder, make_image, write_config
from PIL import Image

from library.dataset import DatasetGroup, build_dataset_group

BUCKETS = ('[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\nbatch_size = 2\n'
           "enable_bucket = true\nmin_bucket_reso = 32\nmax_bucket_reso = 128\nbucket_reso_steps = 16\n")


def subset(folder: Path, extra: str = "") -> str:
    return f'[[datasets.subsets]]\nimage_dir = "{folder.as_posix()}"\n{extra}\n'


def build(tmp_path: Path, text: str, **args) -> DatasetGroup:
    return build_dataset_group(make_args(dataset_config=str(write_config(tmp_path, text)), **args))


def test_batches_never_mix_buckets_and_count_repeats(tmp_path):
    wide = make_folder(tmp_path / "wide", 3, size=(96, 48))
    square = make_folder(tmp_path / "square", 2, size=(64, 64))
    group = build(tmp_path, BUCKETS + subset(wide, "num_repeats = 3") + subset(square))
    assert group.num_train_images == 3 * 3 + 2
    assert len(group) == 5 + 1  # ceil(9 / 2) + ceil(2 / 2)
    seen = {}
    for i in range(len(group)):
        batch = group[i]
        w, h = batch["bucket_reso"]
        assert batch["images"].shape[2:] == (h, w) and batch["images"].shape[0] == len(batch["captions"])
        assert len({Path(k).parent.name for k in batch["image_keys"]}) == 1
        for key in batch["image_keys"]:
            seen[key] = seen.get(key, 0) + 1
        assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    assert sorted(seen.values()) == [1, 1, 3, 3, 3]


def test_set_epoch_is_deterministic_and_changes_order(tmp_path):
    folder = make_folder(tmp_path / "a", 8, caption="a, b, c, d, e")
    text = BUCKETS + subset(folder, "shuffle_caption = true")
    first, second = build(tmp_path, text), build(tmp_path, text)
    orders = []
    for group in (first, second):
        group.set_epoch(3)
        orders.append([(group[i]["image_keys"], group[i]["captions"]) for i in range(len(group))])
    assert orders[0] == orders[1]
    first.set_epoch(4)
    assert [(first[i]["image_keys"], first[i]["captions"]) for i in range(len(first))] != orders[0]
    first.set_epoch(3)
    assert first[2]["captions"] == orders[0][2][1]  # going back gives the same again (resume)


def test_seed_changes_order(tmp_path):
    folder = make_folder(tmp_path / "a", 8)
    text = BUCKETS + subset(folder)
    one, two = build(tmp_path, text, seed=1), build(tmp_path, text, seed=2)
    assert [one[i]["image_keys"] for i in range(4)] != [two[i]["image_keys"] for i in range(4)]


def test_reg_balancing_and_loss_weights(tmp_path):
    train = make_folder(tmp_path / "train", 2)
    reg = make_folder(tmp_path / "reg", 5, prefix="r")
    group = build(tmp_path, BUCKETS + subset(train, "num_repeats = 2") + subset(reg, "is_reg = true"),
                  prior_loss_weight=0.25)
    assert group.num_train_images == 4 and group.num_reg_images == 5
    keys, weights = [], []
    for i in range(len(group)):
        batch = group[i]
        keys += batch["image_keys"]
        weights += batch["loss_weights"].tolist()
    reg_used = [k for k in keys if Path(k).parent.name == "reg"]
    assert len(reg_used) == 4  # only enough reg images to match 4 train samples; r4 is never used
    assert all(w == 0.25 for k, w in zip(keys, weights, strict=True) if Path(k).parent.name == "reg")
    assert all(w == 1.0 for k, w in zip(keys, weights, strict=True) if Path(k).parent.name == "train")


def test_few_reg_images_get_more_repeats(tmp_path):
    train = make_folder(tmp_path / "train", 5)
    reg = make_folder(tmp_path / "reg", 2, prefix="r")
    group = build(tmp_path, BUCKETS + subset(train) + subset(reg, "is_reg = true"))
    keys = [k for i in range(len(group)) for k in group[i]["image_keys"]]
    assert sum(Path(k).parent.name == "reg" for k in keys) == 5


def test_flip_aug_flips_pixels(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[:, :32] = 255  # left half white
    Image.fromarray(pixels).save(folder / "x.png")
    (folder / "x.txt").write_text("x", encoding="utf-8")
    group = build(tmp_path, BUCKETS + subset(folder, "flip_aug = true\nnum_repeats = 40"))
    flips = []
    for i in range(len(group)):
        batch = group[i]
        for image, flipped in zip(batch["images"], batch["flipped"], strict=True):
            assert (image[0, 0, 0] < 0) == flipped  # flipped: the left edge is black
            flips.append(flipped)
    assert 5 < sum(flips) < 35


def test_alpha_mask(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:, 48:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "a.png")
    make_image(folder / "b.png", (64, 64))  # no alpha: mask of ones
    group = build(tmp_path, BUCKETS.replace("batch_size = 2", "batch_size = 1") + subset(folder, "alpha_mask = true"))
    masks = {Path(group[i]["image_keys"][0]).name: group[i]["alpha_masks"] for i in range(len(group))}
    assert masks["a.png"].shape == (1, 64, 64)
    assert masks["a.png"][0, :, :48].min() == 1.0 and masks["a.png"][0, :, 48:].max() == 0.0
    assert torch.all(masks["b.png"] == 1.0)


def test_no_alpha_masks_key_without_alpha_mask(tmp_path):
    group = build(tmp_path, BUCKETS + subset(make_folder(tmp_path / "a", 2)))
    assert group[0]["alpha_masks"] is None and group[0]["latents"] is None and group[0]["text"] is None


def test_resize_and_centre_crop_to_bucket(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    pixels = np.zeros((64, 128, 3), dtype=np.uint8)
    pixels[:, 40:88] = 255  # a white band in the middle third
    Image.fromarray(pixels).save(folder / "wide.png")
    text = BUCKETS.replace("max_bucket_reso = 128", "max_bucket_reso = 80") + subset(folder)
    group = build(tmp_path, text)
    batch = group[0]
    w, h = batch["bucket_reso"]
    assert (w, h) == (80, 48)  # widest bucket; the image (2:1) is resized to 96x48 and cropped by 8 each side
    row = batch["images"][0, 0, h // 2]
    assert row[w // 2] > 0.9 and row[0] < -0.9 and row[-1] < -0.9


def test_bucketing_off_exact_size(tmp_path):
    folder = make_folder(tmp_path / "e", 2, size=(64, 48))
    group = build(tmp_path, '[[datasets]]\nresolution = [64, 48]\n' + subset(folder, 'caption_extension = ".txt"'))
    assert group[0]["bucket_reso"] == (64, 48) and group[0]["images"].shape == (1, 3, 48, 64)


def test_bucketing_off_random_crop_for_large_images(tmp_path):
    folder = make_folder(tmp_path / "big", 1, size=(96, 96))
    group = build(tmp_path, '[[datasets]]\nresolution = 64\n' + subset(folder, "random_crop = true"))
    assert group[0]["images"].shape == (1, 3, 64, 64)
    assert group.latent_cache_blockers() == ["random_crop"]


def test_captions_processed_and_prefixed(tmp_path):
    folder = make_folder(tmp_path / "p", 1, caption="a, b")
    group = build(tmp_path, BUCKETS + subset(folder, 'caption_prefix = "sks"'))
    assert group[0]["captions"] == ["sks a, b"]


def test_structured_json_caption_beside_image(tmp_path):
    folder = make_folder(tmp_path / "j", 1, caption=None)
    (folder / "img0.json").write_text(json.dumps({"character": "miku", "tags": ["x", "y"]}), encoding="utf-8")
    group = build(tmp_path, BUCKETS + subset(folder))
    assert group[0]["captions"] == ["miku, x, y"]
    explicit = build(tmp_path, BUCKETS + subset(folder, 'caption_extension = ".json"'))
    assert explicit[0]["captions"] == ["miku, x, y"]


def test_train_data_dir_subfolders(tmp_path):
    make_folder(tmp_path / "train" / "3_sks dog", 2, caption=None)
    make_folder(tmp_path / "reg" / "1_dog", 2, caption=None, prefix="r")
    group = build_dataset_group(make_args(train_data_dir=str(tmp_path / "train"),
                                          reg_data_dir=str(tmp_path / "reg"), resolution="64", seed=0))
    assert group.num_train_images == 6 and group.num_reg_images == 2
    captions = {c for i in range(len(group)) for c in group[i]["captions"]}
    assert captions == {"sks dog", "dog"}


def test_finetune_metadata_json_and_jsonl(tmp_path):
    folder = make_folder(tmp_path / "ft", 2, caption=None)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"img0.png": {"caption": "a cat", "tags": "cute"}, "img1": {"tags": "dog"}}),
                    encoding="utf-8")
    text = ('[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n'
            f'metadata_file = "{meta.as_posix()}"\nimage_dir = "{folder.as_posix()}"\n')
    group = build(tmp_path, text)
    assert sorted(c for i in range(len(group)) for c in group[i]["captions"]) == ["a cat, cute", "dog"]
    lines = tmp_path / "meta.jsonl"
    lines.write_text(json.dumps({"image_path": str(folder / "img0.png"), "caption": "x"}) + "\n", encoding="utf-8")
    group = build(tmp_path, text.replace("meta.json", "meta.jsonl"))
    assert group[0]["captions"] == ["x"]
    assert json.loads(group.metadata()["ss_datasets"])[0]["is_dreambooth"] is False


def test_metadata_keys(tmp_path):
    folder = make_folder(tmp_path / "m", 2, caption="Tag A, tag b")
    group = build(tmp_path, BUCKETS + subset(folder, "num_repeats = 2") + subset(folder))
    meta = group.metadata()
    assert set(meta) >= {"ss_datasets", "ss_tag_frequency", "ss_dataset_dirs", "ss_num_train_images",
                         "ss_num_reg_images", "ss_num_batches_per_epoch"}
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["ss_tag_frequency"]) == {"m": {"tag a": 2, "tag b": 2}}
    assert json.loads(meta["ss_dataset_dirs"]) == {"m": {"n_repeats": 2, "img_count": 2}}  # duplicate ignored
    datasets = json.loads(meta["ss_datasets"])
    assert datasets[0]["num_train_images"] == 4 and datasets[0]["bucket_info"]["buckets"]["0"]["count"] == 4
    assert meta["ss_num_batches_per_epoch"] == str(len(group)) == "2"
    assert "bucket 0: resolution (64, 64), count: 4" in group.bucket_table()


def test_text_cache_blockers(tmp_path):
    folder = make_folder(tmp_path / "b", 1)
    plain = build(tmp_path, BUCKETS + subset(folder, "caption_dropout_rate = 0.5\nkeep_tokens = 1"))
    assert plain.text_cache_blockers() == [] and plain.latent_cache_blockers() == []
    busy = build(tmp_path, BUCKETS + subset(folder, "shuffle_caption = true\ncaption_tag_dropout_rate = 0.1\n"
                                                    "color_aug = true"))
    assert busy.text_cache_blockers() == ["caption_tag_dropout_rate", "shuffle_caption"]
    assert busy.latent_cache_blockers() == ["color_aug"]
