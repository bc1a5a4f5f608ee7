"""The fast defaults a CUDA run gets (issue 19 point 5), each switchable: torch's fused AdamW, and batches in pinned
memory copied to the GPU without a wait. There is no GPU here: the rules are checked with CUDA reported present,
and a CPU run with the fused AdamW trains the same LoRA as torch's default implementation.

Breaks these catch (each tried once, each failed): `prepare=_fused_on_cuda` dropped from the AdamW entry (the
first test); the rule adding `fused` although the user chose `foreach` (the second); `pinned_batches` ignoring
`--no-dataloader_pin_memory` (the third).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _tiny_run import one_image_dataset, state_dict_of, tiny_model, train

from library.accelerator_setup import pinned_batches
from library.anima.args import add_anima_arguments
from library.args import build_parser, parse_args
from library.registries.optimizers import build_optimizer

PARSER = build_parser("test")
add_anima_arguments(PARSER)


def adamw(*optimizer_args: str) -> torch.optim.Optimizer:
    args = parse_args(PARSER, ["--optimizer_type", "AdamW", *(["--optimizer_args", *optimizer_args] if optimizer_args
                                                               else [])])
    return build_optimizer(args, [{"params": [torch.nn.Parameter(torch.zeros(3))]}]).optimizer


def test_adamw_is_fused_on_cuda_unless_the_user_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not adamw().defaults["fused"]  # no CUDA: torch's own choice
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert adamw().defaults["fused"] is True
    assert not adamw("fused=False").defaults["fused"]


def test_a_chosen_implementation_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    chosen = adamw("foreach=True").defaults
    assert chosen["foreach"] is True and not chosen["fused"]


def test_pinned_batches_follow_cuda_and_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not pinned_batches(parse_args(PARSER, []))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pinned_batches(parse_args(PARSER, []))
    assert not pinned_batches(parse_args(PARSER, ["--no-dataloader_pin_memory"]))


def test_the_fused_adamw_trains_the_same_lora(tmp_path: Path) -> None:
    """fp32 on the CPU: the fused kernel and torch's default differ only in rounding (1e-6 relative here)."""
    tiny = tiny_model(tmp_path / "tiny")
    dataset = one_image_dataset(tiny, tmp_path)
    runs = {name: train(tiny, tmp_path / name, "--max_train_steps", "4", "--learning_rate", "5e-3", *extra,
                        dataset=dataset) for name, extra in (("default", ()), ("fused", ("--optimizer_args",
                                                                                          "fused=True")))}
    default, fused = (state_dict_of(runs[name] / "anima_tiny_lora.safetensors") for name in ("default", "fused"))
    assert default.keys() == fused.keys()
    changed = [key for key in default if "lora_up" in key and default[key].abs().max() > 0]
    assert changed, "the LoRA did not train"
    for key in default:
        torch.testing.assert_close(fused[key], default[key], rtol=1e-4, atol=1e-6)
