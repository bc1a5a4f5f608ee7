"""Validation in the loop on the tiny model: logged at the chosen steps and epochs, training unchanged by it."""

from __future__ import annotations

from pathlib import Path

import pytest
import toml
from _tiny_run import read_losses, tiny_model, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def split_dataset(tiny: Path, work: Path) -> Path:
    config = toml.loads((tiny / "dataset.toml").read_text(encoding="utf-8"))
    config["datasets"][0].update({"validation_split": 0.25, "validation_seed": 3})
    path = work / "split.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


def test_validation_is_logged_and_leaves_training_alone(tiny: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    dataset = split_dataset(tiny, tmp_path)
    common = ("--max_train_steps", "10", "--learning_rate", "1e-2")
    plain = train(tiny, tmp_path / "plain", *common, "--validate_every_n_epochs", "1000", dataset=dataset)
    capsys.readouterr()
    validated = train(tiny, tmp_path / "val", *common, "--validate_every_n_steps", "4", dataset=dataset)
    out = capsys.readouterr().out
    assert read_losses(plain) == read_losses(validated), "validation changed the training run"
    lines = [line for line in out.splitlines() if line.startswith("validation loss")]
    steps = [int(line.split()[4]) for line in lines]
    # 9 train images, batch 2 -> 5 steps per epoch: steps 4 and 8, epochs ending at 5 and 10
    assert steps == [4, 5, 8, 10], lines
    values = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert values[-1] < values[0], values
