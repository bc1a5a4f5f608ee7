"""--network_args written by the user win over the model's defaults (e.g. the --train_norm flag's default)."""

from __future__ import annotations

import anima_train_network
from library.args import parse_args


def test_network_args_train_norm_wins_over_the_flag_default() -> None:
    trainer = anima_train_network.AnimaNetworkTrainer()
    parser = trainer.setup_parser()
    assert trainer.network_args(parse_args(parser, ["--network_args", "train_norm=false"]))["train_norm"] == "false"
    assert trainer.network_args(parse_args(parser, ["--no-train_norm"]))["train_norm"] == "False"
    assert trainer.network_args(parse_args(parser, []))["train_norm"] == "True"
