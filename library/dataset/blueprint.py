"""Resolve every dataset parameter through kohya's fallback chain: subset -> dataset -> [general] -> CLI -> default.

`None` counts as unset at every level, so (as in kohya) a value in dataset.toml wins over the command line. Without
`--dataset_config` the same blueprint is made from `--train_data_dir` (`N_name` subfolders), `--reg_data_dir`
and `--in_json`, so both paths share one code path from here on.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from library.dataset.schema import load_dataset_config, parse_resolution, parse_two_floats, validate_config
from library.errors import ConfigError

logger = logging.getLogger(__name__)

# dataset.toml key -> CLI option name, where they differ
CLI_NAMES = {"batch_size": "train_batch_size", "num_repeats": "dataset_repeats"}


@dataclass
class SubsetParams:
    """One `[[datasets.subsets]]` with every value resolved."""

    image_dir: str | None = None
    metadata_file: str | None = None
    is_reg: bool = False
    alpha_mask: bool = False
    conditioning_data_dir: str | None = None
    num_repeats: int = 1
    shuffle_caption: bool = False
    caption_separator: str = ","
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    secondary_separator: str | None = None
    enable_wildcard: bool = False
    caption_prefix: str | None = None
    caption_suffix: str | None = None
    color_aug: bool = False
    flip_aug: bool = False
    face_crop_aug_range: tuple[float, float] | None = None
    random_crop: bool = False
    token_warmup_min: int = 1
    token_warmup_step: float = 0.0
    custom_attributes: dict[str, Any] = field(default_factory=dict)
    resize_interpolation: str | None = None
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    caption_tag_dropout_rate: float = 0.0
    caption_extension: str = ".caption"
    class_tokens: str | None = None
    cache_info: bool = False

    @property
    def is_finetune(self) -> bool:
        return self.metadata_file is not None


@dataclass
class DatasetParams:
    """One `[[datasets]]`: its batch size, resolution and bucket settings plus its subsets."""

    subsets: list[SubsetParams]
    index: int = 0
    batch_size: int = 1
    resolution: tuple[int, int] | None = None
    enable_bucket: bool = False
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = False
    validation_split: float = 0.0
    validation_seed: int | None = None
    network_multiplier: float = 1.0
    resize_interpolation: str | None = None
    prior_loss_weight: float = 1.0

    @property
    def is_finetune(self) -> bool:
        return all(s.is_finetune for s in self.subsets)


def _cli_value(args: Namespace, key: str) -> Any:
    if key == "conditioning_data_dir" and not getattr(args, "masked_loss", False):
        return None  # kohya ignores --conditioning_data_dir without --masked_loss (see _check_masked_loss)
    value = getattr(args, CLI_NAMES.get(key, key), None)
    if key == "caption_extension" and getattr(args, "caption_extention", None) is not None:
        value = args.caption_extention  # kohya's misspelt legacy alias wins, as in kohya
    if value is None:
        return None
    try:
        if key == "resolution":
            return parse_resolution(value)
        if key == "face_crop_aug_range":
            return parse_two_floats(value)
    except Exception as error:  # voluptuous.Invalid: the CLI spelling of a bad value
        raise ConfigError(f"--{key}: {error}") from None
    return value


def _resolve(cls: type, tables: list[dict[str, Any]], args: Namespace, extra: dict[str, Any]) -> Any:
    values: dict[str, Any] = dict(extra)
    for item in fields(cls):
        if item.name in values or item.name in ("subsets", "index", "prior_loss_weight"):
            continue
        for table in tables:
            if table.get(item.name) is not None:
                values[item.name] = table[item.name]
                break
        else:
            cli = _cli_value(args, item.name)
            if cli is not None:
                values[item.name] = cli
    if values.get("caption_extension") and not values["caption_extension"].startswith("."):
        values["caption_extension"] = "." + values["caption_extension"]
    return cls(**values)


def _check_masked_loss(config: dict[str, Any], args: Namespace, source: str) -> None:
    """kohya accepts conditioning_data_dir only with --masked_loss; so do we, rather than silently not masking."""
    if getattr(args, "masked_loss", False):
        return
    for i, table in enumerate(config.get("datasets", [])):
        for j, sub in enumerate(table.get("subsets", [])):
            if sub.get("conditioning_data_dir") is not None:
                raise ConfigError(f"{source}: datasets[{i}].subsets[{j}]: key 'conditioning_data_dir' (mask images "
                                  "for masked loss) needs --masked_loss, as in kohya. Add --masked_loss, or remove "
                                  "the key.")
    if getattr(args, "conditioning_data_dir", None):
        logger.warning("--conditioning_data_dir is ignored without --masked_loss (as in kohya).")


def blueprint_from_config(config: dict[str, Any], args: Namespace,
                          source: str = "dataset config") -> list[DatasetParams]:
    """Resolve a validated dataset config against the CLI args."""
    _check_masked_loss(config, args, source)
    general = config.get("general", {})
    prior = getattr(args, "prior_loss_weight", None)
    datasets = []
    for i, table in enumerate(config.get("datasets", [])):
        subsets = [_resolve(SubsetParams, [sub, table, general], args, {}) for sub in table.get("subsets", [])]
        extra = {"subsets": subsets, "index": i, "prior_loss_weight": 1.0 if prior is None else float(prior)}
        datasets.append(_resolve(DatasetParams, [table, general], args, extra))
    return datasets


def _config_from_dirs(args: Namespace) -> dict[str, Any]:
    """kohya's "by subdirs" layout: `<train_data_dir>/<repeats>_<class tokens>/` folders."""
    subsets: list[dict[str, Any]] = []
    for option, is_reg in (("train_data_dir", False), ("reg_data_dir", True)):
        parent = getattr(args, option, None)
        if not parent:
            continue
        root = Path(parent)
        if not root.is_dir():
            raise ConfigError(f"--{option}: folder not found: {parent}.")
        found = 0
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            head, _, rest = sub.name.partition("_")
            if not head.isdigit():
                logger.warning("ignore directory without repeats: %s (name it like 10_%s)", sub, sub.name)
                continue
            subset = {"image_dir": str(sub), "num_repeats": int(head), "is_reg": is_reg}
            if rest:
                subset["class_tokens"] = rest
            subsets.append(subset)
            found += 1
        if not found and not is_reg:
            raise ConfigError(f"--{option} {parent}: no '<repeats>_<name>' subfolders found (for example "
                              f"{Path(parent) / '10_mychar'}). train_data_dir must be the parent of folders with "
                              "images; or use --dataset_config.")
    return {"datasets": [{"subsets": subsets}]}


def load_blueprint(args: Namespace) -> list[DatasetParams]:
    """The datasets described by `--dataset_config`, or else by `--train_data_dir`/`--reg_data_dir`/`--in_json`."""
    path = getattr(args, "dataset_config", None)
    if path:
        ignored = [name for name in ("train_data_dir", "reg_data_dir", "in_json") if getattr(args, name, None)]
        if ignored:
            logger.warning("ignoring the following options because config file is found: %s", ", ".join(ignored))
        return blueprint_from_config(load_dataset_config(path), args, str(path))
    in_json = getattr(args, "in_json", None)
    if in_json:
        subset = {"metadata_file": in_json}
        if getattr(args, "train_data_dir", None):
            subset["image_dir"] = args.train_data_dir
        config = {"datasets": [{"subsets": [subset]}]}
    elif getattr(args, "train_data_dir", None):
        config = _config_from_dirs(args)
    else:
        raise ConfigError("No dataset given: pass --dataset_config FILE (a kohya dataset.toml), or "
                          "--train_data_dir FOLDER (with <repeats>_<name> subfolders).")
    return blueprint_from_config(validate_config(config, "command line dataset"), args, "command line dataset")
