"""The generic + Anima argument parser and the kohya train-args TOML (`--config_file`, `--output_config`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from library.anima.args import add_anima_arguments
from library.args import build_parser, parse_args
from library.errors import ConfigError
from library.registries.losses import HUBER_SCHEDULES, LOSSES
from library.registries.schedulers import SCHEDULERS
from library.registries.timesteps import TIMESTEP_SAMPLERS
from library.registries.weightings import WEIGHTINGS


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    parser = build_parser("test")
    add_anima_arguments(parser)
    return parser


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_every_option_has_help(parser: argparse.ArgumentParser) -> None:
    missing = [a.option_strings[0] for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert missing == []
    assert len([a for a in parser._actions if a.option_strings]) > 150


def test_no_effect_options_say_so(parser: argparse.ArgumentParser) -> None:
    help_of = {s: a.help for a in parser._actions for s in a.option_strings}
    for option in ("--v2", "--clip_skip", "--noise_offset", "--qwen3_max_token_length", "--min_snr_gamma"):
        assert "no effect for Anima" in help_of[option], option


@pytest.mark.parametrize(
    ("kohya", "seed", "dest"),
    [
        ("--pretrained_model_name_or_path", "--anima_transformer", "pretrained_model_name_or_path"),
        ("--qwen3", "--qwen", "qwen3"),
        ("--t5_tokenizer_path", "--t5_tokenizer_dir", "t5_tokenizer_path"),
    ],
)
def test_aliases_work_both_ways_and_help_shows_both(
    parser: argparse.ArgumentParser, kohya: str, seed: str, dest: str
) -> None:
    assert getattr(parse_args(parser, [kohya, "a"]), dest) == "a"
    assert getattr(parse_args(parser, [seed, "b"]), dest) == "b"
    assert re.search(re.escape(kohya) + r" \S+, " + re.escape(seed), parser.format_help())


def test_help_choices_come_from_the_registries(parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    for option, registry in [
        ("--lr_scheduler", SCHEDULERS),
        ("--timestep_sampling", TIMESTEP_SAMPLERS),
        ("--loss_type", LOSSES),
        ("--weighting_scheme", WEIGHTINGS),
        ("--huber_schedule", HUBER_SCHEDULES),
    ]:
        shown = re.search(re.escape(option) + r" \{([^}]*)\}", text)
        assert shown is not None, option
        assert set(shown.group(1).split(",")) == set(registry.names()), option


def test_anima_defaults_and_bool_options(parser: argparse.ArgumentParser) -> None:
    args = parse_args(parser, [])
    assert (args.timestep_sampling, args.sigmoid_scale, args.discrete_flow_shift) == ("sigmoid", 1.0, 1.0)
    assert args.train_norm is True and args.auto_download_t5_tokenizer is False
    assert args.max_train_steps == 1600 and args.learning_rate == 2e-6 and args.loss_type == "l2"
    assert parse_args(parser, ["--no-train_norm"]).train_norm is False
    assert parse_args(parser, ["--auto_download_t5_tokenizer"]).auto_download_t5_tokenizer is True


def test_registry_names_are_case_insensitive_on_the_cli(parser: argparse.ArgumentParser) -> None:
    args = parse_args(parser, ["--lr_scheduler", "Cosine", "--timestep_sampling", "SHIFT"])
    assert (args.lr_scheduler, args.timestep_sampling) == ("cosine", "shift")
    with pytest.raises(ConfigError, match="--lr_scheduler: invalid value 'cosinus'. Did you mean `cosine`?"):
        parse_args(parser, ["--lr_scheduler", "cosinus"])


@pytest.mark.parametrize(("text", "value"), [("100", 100), ("0.05", 0.05), ("5%", 0.05)])
def test_warmup_count_ratio_or_percent(parser: argparse.ArgumentParser, text: str, value: float) -> None:
    parsed = parse_args(parser, ["--lr_warmup_steps", text]).lr_warmup_steps
    assert parsed == pytest.approx(value) and type(parsed) is type(value)


KOHYA_FLAT = """
pretrained_model_name_or_path = "dit.safetensors"
qwen3 = "qwen"
network_module = "networks.lora_anima"
network_dim = 8
network_alpha = 4
learning_rate = 1e-4
optimizer_type = "AdamW8bit"
optimizer_args = ["weight_decay=0.01"]
lr_scheduler = "constant"
timestep_sampling = "shift"
discrete_flow_shift = 3
max_train_epochs = 10
gradient_checkpointing = true
text_encoder_lr = 1e-5
lr_warmup_steps = 0.05
dataset_config = "dataset.toml"
"""


def test_kohya_flat_toml(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "train.toml", KOHYA_FLAT)
    args = parse_args(parser, ["--config_file", str(path)])
    assert args.pretrained_model_name_or_path == "dit.safetensors" and args.network_dim == 8
    assert args.network_alpha == 4.0 and isinstance(args.network_alpha, float)
    assert args.discrete_flow_shift == 3.0 and args.gradient_checkpointing is True
    assert args.text_encoder_lr == [1e-5]  # a scalar for a list option becomes a list
    assert args.lr_warmup_steps == 0.05 and args.optimizer_args == ["weight_decay=0.01"]
    assert args.dataset_config == Path("dataset.toml")


def test_sectioned_toml_and_toml_suffix(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    _write(tmp_path / "sec.toml", '[model]\nvae = "vae.safetensors"\n[any_name]\nlearning_rate = 3e-4\nseed = 7\n')
    args = parse_args(parser, ["--config_file", str(tmp_path / "sec")])
    assert (args.vae, args.learning_rate, args.seed) == ("vae.safetensors", 3e-4, 7)


def test_cli_beats_toml_beats_defaults(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.toml", "learning_rate = 1e-4\nnetwork_dim = 8\ntrain_norm = false\n")
    args = parse_args(parser, ["--config_file", str(path), "--learning_rate", "5e-5", "--train_norm"])
    assert (args.learning_rate, args.network_dim, args.train_norm, args.max_train_steps) == (5e-5, 8, True, 1600)


def test_seed_project_spellings_in_toml(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    ok = _write(tmp_path / "f.toml", 'anima_transformer = "d"\npretrained_model_name_or_path = "d"\nqwen = "q"\n')
    args = parse_args(parser, ["--config_file", str(ok)])
    assert (args.pretrained_model_name_or_path, args.qwen3) == ("d", "q")
    bad = _write(tmp_path / "g.toml", 'anima_transformer = "d"\npretrained_model_name_or_path = "e"\n')
    with pytest.raises(ConfigError, match="same option"):
        parse_args(parser, ["--config_file", str(bad)])


def test_unknown_toml_key_names_the_nearest_option(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.toml", "[training]\nlearning_rat = 1e-4\n")
    with pytest.raises(ConfigError, match=r"unknown key `learning_rat`.*`learning_rate`"):
        parse_args(parser, ["--config_file", str(path)])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('mixed_precision = "fp32"', "Valid values: no, fp16, bf16"),
        ('network_dim = "eight"', "network_dim"),
        ("network_dim = 8.5", "expected an integer"),
        ('gradient_checkpointing = "yes"', "true or false"),
        ('lr_scheduler = "cosinus"', "Valid values: constant"),
        ('timestep_sampling = "logit"', "sigmoid"),
    ],
)
def test_toml_values_are_checked(parser: argparse.ArgumentParser, tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "t.toml", line + "\n")
    with pytest.raises(ConfigError, match=message):
        parse_args(parser, ["--config_file", str(path)])


def test_toml_registry_names_any_case(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "t.toml", 'lr_scheduler = "COSINE_WITH_RESTARTS"\nloss_type = "Huber"\n')
    args = parse_args(parser, ["--config_file", str(path)])
    assert (args.lr_scheduler, args.loss_type) == ("cosine_with_restarts", "huber")


def test_missing_config_file_is_named(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.toml"))):
        parse_args(parser, ["--config_file", str(tmp_path / "nope")])


def test_output_config_round_trip(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    argv = [
        "--anima_transformer",
        "dit.safetensors",
        "--learning_rate",
        "1e-4",
        "--network_dim",
        "16",
        "--optimizer_args",
        "weight_decay=0.01",
        "betas=(0.9,0.99)",
        "--lr_warmup_steps",
        "5%",
        "--no-train_norm",
        "--gradient_checkpointing",
        "--dataset_config",
        "d.toml",
        "--wandb_api_key",
        "secret",
    ]
    out = tmp_path / "written"
    with pytest.raises(SystemExit) as exit_info:
        parse_args(parser, [*argv, "--config_file", str(out), "--output_config"])
    assert exit_info.value.code == 0
    text = (tmp_path / "written.toml").read_text(encoding="utf-8")
    assert "secret" not in text and "max_train_steps" not in text  # defaults and secrets are not written
    from_file = vars(parse_args(parser, ["--config_file", str(out)]))
    from_cli = vars(parse_args(parser, argv))
    for key in ("config_file", "wandb_api_key"):
        from_file.pop(key), from_cli.pop(key)
    assert from_file == from_cli
    with pytest.raises(ConfigError, match="already exists"):
        parse_args(parser, [*argv, "--config_file", str(out), "--output_config"])


def test_old_config_flag_points_to_the_converter(parser: argparse.ArgumentParser) -> None:
    with pytest.raises(ConfigError, match="tools/convert_anima_root_to_kohya.py"):
        parse_args(parser, ["--config", "old.toml"])


def test_root_style_toml_points_to_the_converter(parser: argparse.ArgumentParser, tmp_path: Path) -> None:
    path = _write(tmp_path / "root.toml", '[model]\ntransformer_path = "x"\n[training]\nepochs = 1\n')
    with pytest.raises(ConfigError, match="convert_anima_root_to_kohya"):
        parse_args(parser, ["--config_file", str(path)])


def test_deepspeed_is_refused(parser: argparse.ArgumentParser) -> None:
    with pytest.raises(ConfigError, match="DeepSpeed"):
        parse_args(parser, ["--deepspeed"])
