"""A command-line mistake reads like the same mistake in the TOML file (issue 24 point 4): one `error:` line with the
nearest option name or the valid values, exit code 2, no usage block; `--help` keeps the usage and shows defaults.

Breaks these catch (tried together, all failed): `OptionParser.error` falling back to argparse's (usage block and
no suggestion: every mistake case); `_check_value` removed (argparse's "invalid choice" without a suggestion: the
choice cases); `DefaultsFormatter` not set (the --help case).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from anima_train_network import main

SCHEDULERS = ("constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial, inverse_sqrt, "
              "cosine_with_min_lr, cosine_warmup_with_min_lr, warmup_stable_decay, piecewise_constant, adafactor, "
              "reduce_lr_on_plateau, greedy.")


def stderr_of_failing_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["--learning_rat", "1e-2"], "error: unknown option `--learning_rat`. Did you mean `--learning_rate`?"),
    (["--network_dimm", "8"], "error: unknown option `--network_dimm`. Did you mean `--network_dim`?"),
    (["--learning_rate=1e-4", "--zzzz"], "error: unknown option `--zzzz`. See --help for the options."),
    (["--lr_scheduler", "cosin"], "error: --lr_scheduler: invalid value 'cosin'. Did you mean `cosine`? Valid values: "
                                  + SCHEDULERS),
    (["--loss_type", "L3"], "error: --loss_type: invalid value 'L3'. Valid values: l2, l1, huber, smooth_l1."),
    (["--save_precision", "fp8"], "error: --save_precision: invalid value 'fp8'. Valid values: float, fp16, bf16."),
    (["--network_dim", "x"], "error: --network_dim: invalid int value: 'x'"),
])
def test_each_mistake_is_one_error_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert stderr_of_failing_main(argv, capsys).splitlines() == [expected]


def test_a_toml_choice_gets_the_same_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "args.toml"
    config.write_text('lr_scheduler = "cosin"\n', encoding="utf-8")
    err = stderr_of_failing_main(["--config_file", str(config)], capsys)
    assert err.splitlines() == [f"error: {config}: lr_scheduler: invalid value 'cosin'. Did you mean `cosine`? Valid "
                                "values: " + SCHEDULERS]


def test_help_keeps_the_usage_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert stopped.value.code == 0 and out.startswith("usage: ")
    assert "Base learning rate. (default: 2e-06)" in out and "they need a metric at every step). (default: constant)" in out
