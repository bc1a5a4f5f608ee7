"""The shipped 10-step smoke pair (configs/smoke/) trains as it is, from a folder laid out like the repo root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _tiny_run import REPO, reset_accelerate, tiny_model
from safetensors.torch import load_file


def test_smoke_pair_trains_ten_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from anima_train_network import main

    tiny_model(tmp_path / "tiny_anima")  # the paths in the configs are relative to the repo root
    os.symlink(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    reset_accelerate()
    try:
        main(["--config_file", "configs/smoke/anima_10steps_train_args.toml"])
    finally:
        reset_accelerate()
    out = tmp_path / "output" / "smoke"
    assert {p.name for p in out.glob("*.safetensors")} == {"anima_smoke.safetensors",
                                                          "anima_smoke-step00000005.safetensors",
                                                          "anima_smoke-step00000010.safetensors"}
    assert all(key.startswith("diffusion_model.") for key in load_file(str(out / "anima_smoke.safetensors")))
