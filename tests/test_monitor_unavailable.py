"""A monitor that cannot start never stops training (issue 20 point 1): the run trains to its end and the reason is
logged once.

Break this catches (tried once, it failed): `RunMonitor._start` without its `except OSError` (the bind error ends the
run before its first step).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from _tiny_run import read_losses, tiny_model, train


def test_a_monitor_that_cannot_bind_is_a_single_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tiny = tiny_model(tmp_path / "tiny")
    with caplog.at_level(logging.WARNING):  # 192.0.2.1 (TEST-NET-1) is no address of this machine: bind fails
        out = train(tiny, tmp_path / "out", "--max_train_steps", "3", "--monitor", "--monitor_host", "192.0.2.1",
                    "--monitor_allow_remote")
    warnings = [r.getMessage() for r in caplog.records if "training monitor could not start" in r.getMessage()]
    assert len(warnings) == 1 and "192.0.2.1" in warnings[0] and "training goes on" in warnings[0], warnings
    assert (out / "anima_tiny_lora.safetensors").is_file()
    assert [step for step, _ in read_losses(out)] == [1, 2, 3]
