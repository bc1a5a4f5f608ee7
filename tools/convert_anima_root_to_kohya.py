"""Convert an old root-style Anima TOML ([model], [dataset], [lora], [training], [optimizer], [output]) into
kohya's two files: DIR/train_args.toml (for --config_file) and DIR/dataset.toml (for --dataset_config).

    python tools/convert_anima_root_to_kohya.py --input anima_lora_config.toml --output_dir converted
    accelerate launch anima_train_network.py --config_file converted/train_args.toml

The old file's meaning is kept (save_every counted epochs, <N>_<name> folders set repeats, the old
defaults where keys are absent); every key that could not be carried over is printed and written as a
comment at the top of train_args.toml, with the reason.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import _bootstrap  # noqa: F401  (the repository root on sys.path, before any project import)
import toml
from _root_dataset import map_dataset
from _root_lora import map_lora
from _root_mapping import Conversion, Section
from _root_optimizer import map_optimizer
from _root_sections import map_logging, map_model, map_output, map_training

from library.anima.args import add_anima_arguments
from library.args import build_parser
from library.atomic import write_text_atomic
from library.config_file import load_config_values
from library.dataset.schema import validate_config
from library.errors import ConfigError, UserError

TRAIN_ARGS, DATASET = "train_args.toml", "dataset.toml"
TABLES = ("model", "lora", "output", "training", "optimizer", "dataset", "progress", "monitor", "wandb")


def read_root_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--input {path}: file not found. Give the path of the old root-style TOML.")
    try:
        data = toml.load(path)
    except (toml.TomlDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--input {path}: not valid TOML ({exc}). Fix the file and convert again.") from None
    if not (isinstance(data.get("model"), dict) and isinstance(data.get("training"), dict)):
        raise ConfigError(f"--input {path}: not a root-style Anima TOML (it needs [model] and [training] tables). "
                        "A kohya train-args file needs no conversion: pass it as --config_file.")
    return data


def convert(data: dict[str, Any], source: Path) -> Conversion:
    """Map every table; `source` anchors relative paths and names the file in messages."""
    conv = Conversion(source=source.resolve())
    sections = {name: Section(conv, name, data.get(name)) for name in TABLES}
    map_model(sections["model"])
    map_lora(sections["lora"])
    map_output(sections["output"], sections["lora"].get("lora_name"))
    map_training(sections["training"])
    map_optimizer(sections["optimizer"])
    map_dataset(sections["dataset"])
    for name in ("progress", "monitor", "wandb"):
        if name in data:
            map_logging(sections[name], name)
    for section in sections.values():
        section.finish()
    for key in data:
        if key not in TABLES:
            conv.skip(key, "not a table of the root-style format; nothing reads it")
    if conv.network_args:
        conv.train_args["network_args"] = conv.network_args
    if conv.optimizer_args:
        conv.train_args["optimizer_args"] = conv.optimizer_args
    return conv


def _comment(title: str, lines: list[str]) -> list[str]:
    return [f"# {title}", *(f"#   {line}" for line in lines), "#"] if lines else []


def render_train_args(conv: Conversion) -> str:
    header = [
        f"# Converted by tools/convert_anima_root_to_kohya.py from {conv.source}",
        "#",
        *_comment("Not converted (key: why):", [f"{key}: {why}" for key, why in conv.unmapped]),
        *_comment("Filled in from the old trainer's defaults (absent from the file):", conv.defaulted),
        *_comment("Worth knowing:", [*conv.notes, "The old trainer read the whole caption file; kohya reads its "
                                                  "first line (enable_wildcard picks a random line)."]),
    ]
    return "\n".join(header) + "\n" + toml.dumps(conv.train_args)


def check(train_args_text: str, dataset: dict[str, Any]) -> None:
    """Both outputs must load with this project's own readers; a failure here is a converter bug."""
    validate_config(dataset, DATASET)
    parser = build_parser("convert check")
    add_anima_arguments(parser)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / TRAIN_ARGS
        path.write_text(train_args_text, encoding="utf-8")
        load_config_values(parser, path)


def write_outputs(conv: Conversion, output_dir: Path, force: bool) -> tuple[Path, Path]:
    train_path, dataset_path = output_dir / TRAIN_ARGS, output_dir / DATASET
    existing = [str(p) for p in (train_path, dataset_path) if p.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist(s). Pass --force to overwrite, or choose another "
                        "--output_dir.")
    conv.train_args["dataset_config"] = str(dataset_path.resolve())
    text = render_train_args(conv)
    dataset = conv.dataset_config()
    check(text, dataset)
    write_text_atomic(dataset_path, toml.dumps(dataset))
    write_text_atomic(train_path, text)
    return train_path, dataset_path


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--input", required=True, help="the old root-style TOML (with [model] and [training])")
    parser.add_argument("--output_dir", default=None,
                        help="folder for train_args.toml and dataset.toml (default: kohya_converted beside --input)")
    parser.add_argument("--force", action="store_true", help="overwrite train_args.toml / dataset.toml if present")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    source = Path(args.input)
    try:
        conv = convert(read_root_config(source), source)
        output_dir = Path(args.output_dir) if args.output_dir else source.resolve().parent / "kohya_converted"
        train_path, dataset_path = write_outputs(conv, output_dir, args.force)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {train_path}\nWrote {dataset_path}")
    if conv.unmapped:
        print("Not converted:")
        for key, why in conv.unmapped:
            print(f"  {key}: {why}")
    for note in conv.notes:
        print(f"Note: {note}")
    print(f"Train with: accelerate launch anima_train_network.py --config_file {train_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
