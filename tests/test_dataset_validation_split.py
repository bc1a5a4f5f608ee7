"""validation_split / validation_seed (dataset-config.md §8): which images are held out, and the validation group."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
from dataset_util import make_args, make_folder, write_config

from library.dataset import DatasetGroup, build_dataset_group
from library.errors import ConfigError

HEAD = ('[general]\ncaption_extension = ".txt"\n[[datasets]]\nresolution = 64\nbatch_size = 2\n'
        "enable_bucket = true\nmin_bucket_reso = 32\nmax_bucket_reso = 128\nbucket_reso_steps = 16\n")


def subset(folder: Path, extra: str = "") -> str:
    return f'[[datasets.subsets]]\nimage_dir = "{folder.as_posix()}"\n{extra}\n'


def build(tmp_path: Path, text: str, **args) -> DatasetGroup:
    return build_dataset_group(make_args(dataset_config=str(write_config(tmp_path, text)), **args))


def names(group: DatasetGroup | None) -> list[str]:
    """Image file names of a group, once each, sorted."""
    assert group is not None
    return sorted({s.item.path.name for s in group.all_samples()})


def seen(group: DatasetGroup) -> list[str]:
    """Image file names of every batch of the current epoch (repeats included), sorted."""
    return sorted(Path(k).name for i in range(len(group)) for k in group[i]["image_keys"])


def test_split_follows_kohya_shuffle_and_holds_out_the_tail(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a", 10)
    state = random.getstate()
    group = build(tmp_path, HEAD + "validation_split = 0.3\nvalidation_seed = 7\n" + subset(folder, "num_repeats = 4"))
    assert random.getstate() == state, "the global RNG moved"
    files = sorted(p.name for p in folder.glob("*.png"))
    random.seed(7)  # kohya: random.seed(validation_seed); random.shuffle(file list)
    random.shuffle(files)
    assert names(group) == sorted(files[:7]) and names(group.validation) == sorted(files[7:])
    assert group.num_train_images == 7 * 4
    assert group.validation.num_train_images == 3 and seen(group.validation) == sorted(files[7:])  # repeats 1
    assert group.metadata()["ss_num_validation_images"] == "3"


def test_train_and_validation_never_share_an_image(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a", 3)  # kohya's round(3 * 0.5) = 2 would repeat a training image
    group = build(tmp_path, HEAD + "validation_split = 0.5\nvalidation_seed = 1\n" + subset(folder))
    assert len(names(group)) == 2 and len(names(group.validation)) == 1
    assert not set(names(group)) & set(names(group.validation))


def test_each_subset_is_split_and_reg_subsets_never(tmp_path: Path) -> None:
    first, second = make_folder(tmp_path / "a", 4, prefix="a"), make_folder(tmp_path / "b", 4, prefix="b")
    reg = make_folder(tmp_path / "reg", 6, prefix="r")
    group = build(tmp_path, HEAD + "validation_split = 0.25\nvalidation_seed = 3\n" + subset(first)
                  + subset(second) + subset(reg, "is_reg = true"))
    held = names(group.validation)
    assert len([n for n in held if n.startswith("a")]) == 1 and len([n for n in held if n.startswith("b")]) == 1
    assert not any(n.startswith("r") for n in held)
    assert group.num_train_images == 6 and group.num_reg_images == 6  # reg balanced against the 6 kept images
    assert group.validation.num_reg_images == 0


def test_without_validation_seed_the_split_follows_seed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a", 12)
    text = HEAD + "validation_split = 0.25\n" + subset(folder)
    splits = {seed: names(build(tmp_path, text, seed=seed).validation) for seed in (1, 2, 3)}
    assert names(build(tmp_path, text, seed=1).validation) == splits[1]
    assert len({tuple(v) for v in splits.values()}) > 1
    pinned = HEAD + "validation_split = 0.25\nvalidation_seed = 5\n" + subset(folder)
    assert names(build(tmp_path, pinned, seed=1).validation) == names(build(tmp_path, pinned, seed=2).validation)


def test_command_line_split_is_the_fallback(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a", 4)
    group = build(tmp_path, HEAD + subset(folder), validation_split=0.5, validation_seed=9)
    assert len(names(group)) == 2 and len(names(group.validation)) == 2
    assert build(tmp_path, HEAD + subset(folder), validation_split=0.0).validation is None


@pytest.mark.parametrize("value", ["1.5", "-0.2"])
def test_split_outside_zero_one_warns_and_trains_on_all(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                        value: str) -> None:
    folder = make_folder(tmp_path / "a", 4)
    with caplog.at_level(logging.WARNING):
        group = build(tmp_path, HEAD + f"validation_split = {value}\n" + subset(folder))
    assert group.validation is None and group.num_train_images == 4
    assert f"`validation_split` ({float(value)}) is not a valid number between 0.0 and 1.0" in caplog.text


def test_holding_out_everything_says_so(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a", 2)
    with pytest.raises(ConfigError, match="validation_split holds out every image"):
        build(tmp_path, HEAD + "validation_split = 1.0\n" + subset(folder))


def test_fine_tuning_datasets_are_split_too(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "ft", 4, caption=None)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({f"img{i}.png": {"caption": f"c{i}"} for i in range(4)}), encoding="utf-8")
    text = (HEAD + "validation_split = 0.5\nvalidation_seed = 2\n[[datasets.subsets]]\n"
            f'metadata_file = "{meta.as_posix()}"\nimage_dir = "{folder.as_posix()}"\n')
    group = build(tmp_path, text)
    assert len(names(group)) == 2 and len(names(group.validation)) == 2
    assert not set(names(group)) & set(names(group.validation))


def test_validation_batches_keep_the_dataset_settings_and_stay_fixed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a", 8, caption="a, b, c, d")
    group = build(tmp_path, HEAD + "validation_split = 0.5\nvalidation_seed = 4\n"
                  + subset(folder, "shuffle_caption = true\nflip_aug = true"))
    validation = group.validation
    first = [validation[i] for i in range(len(validation))]
    assert len(validation) == 2 and all(b["images"].shape == (2, 3, 64, 64) for b in first)  # batch_size 2
    group.set_epoch(5)  # training epochs do not move the validation batches
    again = [validation[i] for i in range(len(validation))]
    assert [b["captions"] for b in again] == [b["captions"] for b in first]
    assert [b["flipped"] for b in again] == [b["flipped"] for b in first]
    assert "dataset 0 (validation)" in validation.bucket_table()
