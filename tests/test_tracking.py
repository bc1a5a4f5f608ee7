"""Trackers: run folders, option checks, what the step logger writes (read back from real TensorBoard event
files), and the end-of-training loss curve (the summary: tests/test_run_output.py)."""

from __future__ import annotations

import math
import sys
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from library import tracking
from library.args import build_parser
from library.atomic import TMP_MARK
from library.errors import ConfigError
from library.loss_curve import SIZE, default_window, moving_average, nice_ticks, write_loss_curve_png

NOW = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1))


def make_args(*argv: str) -> Namespace:
    return build_parser("test").parse_args(list(argv))


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_run_folder_is_prefix_and_timestamp(tmp_path: Path) -> None:
    args = make_args("--logging_dir", str(tmp_path), "--log_prefix", "mylora_")
    assert tracking.run_log_dir(args, NOW) == tmp_path / "mylora_20240102030405"
    assert tracking.run_log_dir(make_args("--logging_dir", "logs"), NOW) == Path("logs/20240102030405")
    assert tracking.run_log_dir(make_args(), NOW) is None


def test_step_logger_writes_scalars_histogram_and_samples(tmp_path: Path) -> None:
    args = make_args("--logging_dir", str(tmp_path / "logs"), "--log_prefix", "run_", "--log_config",
                     "--network_dim", "7", "--wandb_api_key", "SECRET", "--output_dir", str(tmp_path / "out"))
    accelerator = Accelerator(log_with=tracking.log_with(args), project_dir=args.logging_dir)
    run_dir = tracking.init_trackers(accelerator, args, NOW)
    assert run_dir == tmp_path / "logs" / "run_20240102030405"
    step_logger = tracking.StepLogger(accelerator, ["unet"], histogram_every=2)
    sigmas = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.7, 0.8, 0.9])]
    for step in (1, 2, 3, 4):
        step_logger.add_sigmas(sigmas[(step - 1) // 2])
        step_logger.log(step, loss=0.5 / step, average=0.6 / step, lrs=[1e-4], param_groups=[{"lr": 1e-4, "d": 3.0}])
    step_logger.log_samples(4, [Image.new("RGB", (16, 8), (255, 0, 0))])
    accelerator.end_training()

    logs = events(run_dir / "network_train")
    assert {"loss/current", "loss/average", "lr/unet", "lr/d*lr/unet"} <= set(logs.Tags()["scalars"])
    assert [(e.step, round(e.value, 6)) for e in logs.Scalars("loss/current")] == [
        (1, 0.5), (2, 0.25), (3, round(0.5 / 3, 6)), (4, 0.125)]
    assert logs.Scalars("lr/d*lr/unet")[0].value == pytest.approx(3e-4)
    histograms = logs.Histograms("timesteps")
    assert [h.step for h in histograms] == [2, 4]
    assert [h.histogram_value.num for h in histograms] == [6, 6]  # every sigma of both steps, none twice
    assert histograms[0].histogram_value.max == pytest.approx(0.3)
    assert histograms[1].histogram_value.min == pytest.approx(0.7)
    sample = logs.Images("sample_0")[0]
    assert (sample.step, sample.width, sample.height) == (4, 16, 8)
    (hparams,) = (run_dir / "network_train").glob("*/hparams.yml")  # accelerate's own sub-folder
    config = hparams.read_text(encoding="utf-8")
    assert "network_dim: 7" in config
    assert "SECRET" not in config and str(tmp_path) not in config


def test_step_logger_without_trackers_collects_nothing() -> None:
    step_logger = tracking.StepLogger(Accelerator(), ["unet"])
    step_logger.add_sigmas(torch.rand(4))
    step_logger.log(1, 0.1, 0.1, [1e-4])
    assert not step_logger.active and step_logger._sigmas == []


def test_wandb_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(ConfigError, match=r"--log_with wandb.*pip install wandb"):
        tracking.validate_tracking(make_args("--log_with", "wandb"))
    args = make_args("--log_with", "all", "--logging_dir", "logs")
    tracking.validate_tracking(args)
    assert tracking.log_with(args) == ["tensorboard"]


def test_option_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--logging_dir"):
        tracking.validate_tracking(make_args("--log_with", "tensorboard"))
    bad = tmp_path / "trackers.toml"
    bad.write_text("[wandb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="--log_tracker_config"):
        tracking.validate_tracking(make_args("--log_tracker_config", str(bad)))
    with pytest.raises(ConfigError, match="no such file"):
        tracking.validate_tracking(make_args("--log_tracker_config", str(tmp_path / "missing.toml")))
    assert tracking.log_with(make_args()) is None
    assert tracking.log_with(make_args("--logging_dir", "logs")) == ["tensorboard"]


def write_csv(path: Path, losses: list[float]) -> Path:
    path.write_text("step,loss\n" + "".join(f"{i},{loss!r}\n" for i, loss in enumerate(losses, 1)), encoding="utf-8")
    return path


def test_loss_curve_png_follows_the_losses(tmp_path: Path) -> None:
    falling = [0.3 * math.exp(-i / 40) + 0.05 * ((i * 7919) % 13) / 13 for i in range(200)]
    rising = list(reversed(falling))
    pictures = []
    for name, losses in (("a", falling), ("b", falling), ("c", rising)):
        (tmp_path / name).mkdir()  # same file name, so the titles match
        png = write_loss_curve_png(write_csv(tmp_path / name / "x-loss.csv", losses), tmp_path / name / "x-loss.png")
        with Image.open(png) as image:
            assert image.size == SIZE
            pictures.append(np.asarray(image.convert("RGB")).astype(int))
    assert np.array_equal(pictures[0], pictures[1])
    changed = np.abs(pictures[0] - pictures[2]).sum(axis=2) > 0
    assert changed.sum() > 2000  # the curves differ, not just a pixel or two
    assert not any(TMP_MARK in p.name for p in tmp_path.rglob("*"))


def test_loss_curve_survives_nan_and_skips_empty(tmp_path: Path) -> None:
    png = write_loss_curve_png(write_csv(tmp_path / "n-loss.csv", [0.2, math.nan, 0.1, 0.15]), tmp_path / "n.png")
    assert png is not None and png.exists()
    assert write_loss_curve_png(write_csv(tmp_path / "e-loss.csv", []), tmp_path / "e.png") is None
    assert not (tmp_path / "e.png").exists()


def test_moving_average_and_ticks() -> None:
    assert moving_average([1.0, 3.0, math.nan, 5.0], 2) == [1.0, 2.0, 2.0, 4.0]
    assert [default_window(n) for n in (3, 20, 1600, 100_000)] == [3, 5, 80, 200]
    assert nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(3.0, 1601.0) == pytest.approx([500.0, 1000.0, 1500.0])

