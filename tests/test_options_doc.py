"""docs/options.md is generated from the parser and current; docs/quickstart.md names only real options and its TOML
examples pass the same checks the trainer runs."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import toml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gen_options_doc  # noqa: E402

from library.config_file import load_config_values  # noqa: E402
from library.dataset.schema import validate_config  # noqa: E402

OPTIONS_MD = ROOT / "docs" / "options.md"
QUICKSTART_MD = ROOT / "docs" / "quickstart.md"
OPTION_TOKEN = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
FOREIGN_OPTIONS = {"--local-dir"}  # `hf download`'s, in the download step


def row(text: str, option: str) -> str:
    """The table row whose option cell starts with `option`."""
    rows = [line for line in text.splitlines() if line.startswith(f"| `{option}`")]
    assert len(rows) == 1, f"{option}: {len(rows)} rows"
    return rows[0]


def test_options_md_is_current() -> None:
    assert OPTIONS_MD.read_text(encoding="utf-8") == gen_options_doc.render(), (
        "docs/options.md is stale: run `python tools/gen_options_doc.py`"
    )


def test_known_options_with_spellings_type_default_and_choices() -> None:
    text = gen_options_doc.render()
    assert "| int |" in row(text, "--network_dim")
    assert row(text, "--pretrained_model_name_or_path").startswith(
        "| `--pretrained_model_name_or_path`, `--anima_transformer` |")
    assert "`--qwen`" in row(text, "--qwen3")
    assert "| flag | `true` |" in row(text, "--train_norm") and "`--no-train_norm`" in row(text, "--train_norm")
    precision = row(text, "--mixed_precision")
    assert "| `no` |" in precision and "`bf16`" in precision
    assert "| `sigmoid` |" in row(text, "--timestep_sampling")  # Anima's default, set after the generic groups
    assert "(< 1, or N%)" not in text and "N%)" in row(text, "--lr_warmup_steps")  # `%%` expanded, `<` escaped
    assert "`--help`" not in text
    assert "## Anima" in text and "## network" in text


def test_doc_follows_the_parser() -> None:
    parser = gen_options_doc.build_trainer_parser()
    group = parser.add_argument_group("extra")
    group.add_argument("--made_up", type=float, nargs="*", default=[0.5], choices=[0.5, 1.0], help="a | b")
    text = gen_options_doc.render(parser)
    assert row(text, "--made_up") == "| `--made_up` | list of float | `[0.5]` | a \\| b Choices: `0.5`, `1.0`. |"
    assert text.index("## Anima") < text.index("## extra")


def test_check_mode(tmp_path: Path) -> None:
    target = tmp_path / "options.md"
    assert gen_options_doc.main(["--output", str(target), "--check"]) == 1  # missing
    assert gen_options_doc.main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == gen_options_doc.render()
    assert gen_options_doc.main(["--output", str(target), "--check"]) == 0
    target.write_text(target.read_text(encoding="utf-8").replace("network_dim", "network_rank"), encoding="utf-8")
    assert gen_options_doc.main(["--output", str(target), "--check"]) == 1


def test_quickstart_names_only_real_options() -> None:
    known = gen_options_doc.build_trainer_parser()._option_string_actions  # noqa: SLF001
    tokens = set(OPTION_TOKEN.findall(QUICKSTART_MD.read_text(encoding="utf-8"))) - FOREIGN_OPTIONS
    assert {"--anima_transformer", "--config_file", "--dataset_config"} <= tokens
    assert sorted(t for t in tokens if t not in known) == []


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)


def test_quickstart_toml_examples_are_accepted(tmp_path: Path) -> None:
    train, dataset = toml_blocks(QUICKSTART_MD.read_text(encoding="utf-8"))[::-1]
    assert "[[datasets]]" in dataset and "network_module" in train
    path = tmp_path / "train_args.toml"
    path.write_text(train, encoding="utf-8")
    values = load_config_values(gen_options_doc.build_trainer_parser(), path)  # unknown keys / bad values raise
    assert values["network_module"] == "networks.lora_anima" and values["mixed_precision"] == "bf16"
    assert values["cache_latents"] is True and values["timestep_sampling"] == "sigmoid"
    config = validate_config(toml.loads(dataset), "quickstart dataset.toml")
    assert config["datasets"][0]["subsets"][0]["num_repeats"] == 10
