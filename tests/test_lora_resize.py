"""tools/resize_anima_lora.py: SVD resizing that is the best rank-r approximation with the scale kept, the
dynamic rank rules, and the refusal of what cannot be resized (LoKr)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from _fake_anima import make_model, one_thread
from safetensors import safe_open
from safetensors.torch import load_file
from test_lora_tools import _tiny_files, random_network

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import resize_anima_lora as resize  # noqa: E402
from _lora_math import comfy_delta  # noqa: E402
from _lora_read import read_adapter  # noqa: E402

from networks import lora_anima  # noqa: E402

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)


def _svd_truncate(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(delta.double())
    return (u[:, :rank] * s[:rank]) @ vh[:rank], s


def test_resize_is_the_best_rank_r_approximation_with_the_scale_kept():
    network = random_network(lora_anima, make_model(), 8, 4.0, seed=7)
    patches = read_adapter(network.file_state_dict(), make_model(), "r8")
    full, report = resize.resize_weights(patches, 8)
    assert [r.new_rank for r in report] == [8] * len(report) and min(r.fro_retained for r in report) > 0.999999
    low, report = resize.resize_weights(patches, 3)
    fro = {r.path: r.fro_retained for r in report}
    for old, same, small in zip(patches, full, low, strict=True):
        torch.testing.assert_close(comfy_delta(same), comfy_delta(old), rtol=0, atol=1e-5, msg=old.path)
        if old.kind == "norm":
            assert small is old
            continue
        best, s = _svd_truncate(comfy_delta(old), 3)
        assert small.tensors["lora_down.weight"].shape[0] == 3
        assert float(small.tensors["alpha"]) / 3 == pytest.approx(4.0 / 8)  # kohya: alpha = scale · new rank
        torch.testing.assert_close(comfy_delta(small).double(), best, rtol=0, atol=1e-5, msg=old.path)
        assert fro[old.path] == pytest.approx(float((s[:3] ** 2).sum() / (s**2).sum()) ** 0.5, abs=1e-6)
        assert fro[old.path] < 0.999  # random rank-8 products lose something at rank 3


def test_resize_dynamic_sv_fro_keeps_the_fewest_that_reach_the_target():
    network = random_network(lora_anima, make_model(), 8, 8.0, seed=8, train_norm="false")
    patches = read_adapter(network.file_state_dict(), make_model(), "r8")
    _resized, report = resize.resize_weights(patches, 8, "sv_fro", 0.9)
    for patch, info in zip(patches, report, strict=True):
        s = torch.linalg.svdvals(comfy_delta(patch).double())[:8]
        fro, k = ((s**2).cumsum(0) / (s**2).sum()).sqrt(), info.new_rank
        assert fro[k - 1] >= 0.9 and (k == 1 or fro[k - 2] < 0.9), patch.path
    assert any(r.new_rank < 8 for r in report)


def test_resize_cli_refuses_lokr_and_reports_retained_fractions(tmp_path, capsys):
    dit, lora_file, lokr_file = _tiny_files(tmp_path)
    out = tmp_path / "r2.safetensors"
    assert resize.main([str(lokr_file), "--output", str(out), "--new_rank", "2", "--model", str(dit)]) == 2
    assert "LoKr" in capsys.readouterr().err and not out.exists()
    assert resize.main([str(lora_file), "--output", str(out), "--new_rank", "2", "--model", str(dit)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("Frobenius retained") == 1 + sum(".lora_down." in k for k in load_file(lora_file))
    saved = load_file(out)
    assert all(t.shape[0] == 2 for k, t in saved.items() if k.endswith("lora_down.weight"))
    source = load_file(lora_file)
    assert all(torch.equal(saved[k], t) for k, t in source.items() if k.endswith("w_norm"))
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata()["ss_network_dim"] == "2"
