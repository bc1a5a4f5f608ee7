"""Values that used to be checked only once the models and caches were ready (issue 24 point 3) now stop at start-up:
`--network_args` values, a selection of no module, piecewise_constant without its rules, an unknown torch.compile
backend, and `--network_weights` tensors of the wrong kind or shape, read from the file's and the DiT's headers.
Each run goes through `anima_train_network.main` with `load_target_model` made to fail the test.

Breaks these tests catch (each was made once and failed them):
- networks/lora_anima.py `check_network_args` without `check_common_values`: `train_llm_adapter=maybe` and a bad
  regex reach the model load; networks/lokr_anima.py `check_network_args` without `lokr_options`: `factor=0` does;
- anima_train_network.py `assert_extra_args` without the `check_before_models` line: every network and weights case;
- networks/_plan.py `planned_tensors` passing `network_dim` as 4: a rank-8 plan is wrong (the plan/build test) and a
  rank-4 file passes a `--network_dim 8` run; `check_weights_fit` without `check_file_tensors`: shape and kind pass;
- networks/_adapter_module.py `check_file_tensors` without its other-kind loop: a LoRA file for a LoKr network gets
  "has no 'lora_down.weight'" instead of the module to use;
- library/registries/schedulers/__init__.py without `entry.check(...)`: piecewise_constant's rules are not checked;
- library/anima/startup_checks.py without `check_dynamo_backend`: `--dynamo_backend foo` passes.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from _tiny_run import forbid_model_loads, tiny_model, train, validate

from library.anima.dit_header import inspect_dit_file
from library.anima.loading import load_anima_dit
from library.errors import ConfigError
from library.registries.schedulers import validate_scheduler
from networks import lokr_anima, lora_anima
from networks._plan import planned_tensors


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def files(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A rank-4 LoRA and a factor-4 LoKr of the tiny DiT, written by the networks themselves."""
    folder = tmp_path_factory.mktemp("adapters")
    written = {}
    for name, kind, kwargs in (("lora", lora_anima, {}), ("lokr", lokr_anima, {"factor": "4"})):
        dit = load_anima_dit(tiny / "models" / "anima_tiny.safetensors", dtype=torch.float32, device="cpu")
        network = kind.create_network(1.0, 4, 4.0, None, [], dit, **kwargs)
        written[name] = folder / f"{name}.safetensors"
        network.save_weights(written[name], torch.float32, {})
    return written


@pytest.fixture(autouse=True)
def models_must_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_model_loads(monkeypatch)


def refused(tiny: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """The one `error:` line of a run that stops with exit code 2."""
    with pytest.raises(SystemExit) as stopped:
        train(tiny, out, *extra)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("extra,said", [
    (["--network_args", "train_llm_adapter=maybe"], "train_llm_adapter='maybe' is not a boolean"),
    (["--network_args", "exclude_patterns=['.*']"], "selects no module of the DiT"),
    (["--network_args", "exclude_patterns=['.*']", "train_norm=false"], "selects no module of the DiT"),
    (["--network_args", "network_reg_dims=blocks.*"], "is not of the form regex=value"),
    (["--network_args", "loraplus_lr_ratio=big"], "loraplus_lr_ratio='big' is not a number"),
    (["--network_module", "networks.lokr_anima", "--network_args", "factor=0"], "factor=0: use a positive factor"),
    (["--network_module", "networks.lokr_anima", "--network_args", "lokr_factor=-3"], "factor=-3"),
    (["--network_module", "networks.lokr_anima", "--network_args", "decompose_both=sometimes"], "not a boolean"),
])
def test_a_bad_network_args_value_stops_at_start_up(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    extra: list[str], said: str) -> None:
    assert said in refused(tiny, tmp_path / "out", capsys, *extra)


@pytest.mark.parametrize("rules,said", [
    (None, "needs its rules"), ("'1:x,0.1'", "not of the form"), ("'1:20,0.5:10,0.1'", "must ascend"),
])
def test_piecewise_constant_rules_are_checked_at_start_up(tiny: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], rules: str | None,
                                                          said: str) -> None:
    extra = ["--lr_scheduler", "piecewise_constant"] + (["--lr_scheduler_args", f"step_rules={rules}"] if rules else [])
    assert said in refused(tiny, tmp_path / "out", capsys, *extra)


def test_good_piecewise_rules_pass() -> None:
    validate_scheduler(Namespace(lr_scheduler="piecewise_constant", lr_scheduler_args=["step_rules='1:10,0.1:20,0.01'"],
                                 lr_warmup_steps=0, optimizer_type="AdamW", optimizer_args=None))


def test_an_unknown_compile_backend_stops_at_start_up(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    assert "--dynamo_backend 'foo'" in refused(tiny, tmp_path / "a", capsys, "--torch_compile", "--dynamo_backend",
                                               "foo")
    with caplog.at_level(logging.WARNING):
        validate(tiny, tmp_path / "b", "--dynamo_backend", "foo")
    assert "--dynamo_backend foo has no effect without --torch_compile" in caplog.text


@pytest.mark.parametrize("name,extra,said", [
    ("lora", ["--network_dim", "8"], "shape (4, 32) in the file, but the network has (8, 32)"),
    ("lora", ["--network_args", "network_reg_dims=blocks\\.1\\..*=2"], "but the network has (2, "),
    ("lora", ["--network_module", "networks.lokr_anima"], "a LoRA weight; load this file with --network_module "
                                                          "networks.lora_anima"),
    ("lora", ["--network_module", "networks.lokr_anima", "--dim_from_weights"], "a LoRA weight"),
    ("lokr", [], "a LoKr weight; load this file with --network_module networks.lokr_anima"),
    ("lokr", ["--network_module", "networks.lokr_anima", "--network_args", "factor=2"], "in the file, but the network"),
    ("dit", [], "its header is that of a file for --pretrained_model_name_or_path"),
])
def test_network_weights_that_do_not_fit_stop_at_start_up(tiny: Path, files: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], name: str,
                                                          extra: list[str], said: str) -> None:
    file = tiny / "models" / "anima_tiny.safetensors" if name == "dit" else files[name]
    assert said in refused(tiny, tmp_path / "out", capsys, "--network_weights", str(file), *extra)


@pytest.mark.parametrize("name,extra", [
    ("lora", []), ("lora", ["--network_dim", "2", "--dim_from_weights"]),
    ("lokr", ["--network_module", "networks.lokr_anima", "--network_args", "factor=4"]),
    ("lokr", ["--network_module", "networks.lokr_anima", "--dim_from_weights"]),
])
def test_network_weights_that_fit_pass(tiny: Path, files: dict[str, Path], tmp_path: Path, name: str,
                                       extra: list[str]) -> None:
    validate(tiny, tmp_path / "out", "--network_weights", str(files[name]), *extra)


@pytest.mark.parametrize("kind,dim,kwargs", [
    (lora_anima, 8, {}), (lora_anima, 4, {"network_reg_dims": "blocks\\.0\\..*=2", "train_llm_adapter": "false"}),
    (lokr_anima, 4, {"factor": "4"}), (lokr_anima, 2, {"factor": "-1", "decompose_both": "true"}),
    (lokr_anima, 100000, {}), (lora_anima, 4, {"exclude_patterns": "['.*mlp.*']", "train_norm": "false"}),
])
def test_the_plan_is_the_network_the_build_makes(tiny: Path, kind: object, dim: int, kwargs: dict[str, str]) -> None:
    """The shapes the start-up check compares against are exactly those of the network `create_network` builds."""
    dit_file = tiny / "models" / "anima_tiny.safetensors"
    with torch.device("meta"):
        from library.anima.model import AnimaDiT
        meta = AnimaDiT(inspect_dit_file(dit_file).config)
    dit = load_anima_dit(dit_file, dtype=torch.float32, device="cpu")
    network = kind.create_network(1.0, dim, 1.0, None, [], dit, **kwargs)
    built = {a.path: {k: tuple(t.shape) for k, t in a.state_dict().items()} for a in network.adapters}
    assert planned_tensors(kind, meta, dim, kwargs) == built


def test_a_plan_of_no_module_is_refused(tiny: Path) -> None:
    with torch.device("meta"):
        from library.anima.model import AnimaDiT
        meta = AnimaDiT(inspect_dit_file(tiny / "models" / "anima_tiny.safetensors").config)
    with pytest.raises(ConfigError, match="selects no module"):
        planned_tensors(lora_anima, meta, 4, {"exclude_patterns": "['.*']"})


@pytest.mark.parametrize("kind,kwargs,said", [
    (lora_anima, {"train_llm_adapter": "maybe"}, "not a boolean"), (lora_anima, {"include_patterns": "['(']"}, "regular"),
    (lora_anima, {"loraplus_unet_lr_ratio": "x"}, "not a number"), (lokr_anima, {"factor": "0"}, "factor=0"),
    (lokr_anima, {"lokr_rank_dropout": "x"}, "not a number"),
])
def test_check_network_args_checks_values_without_a_model(kind: object, kwargs: dict[str, str], said: str) -> None:
    """The generic `validate` calls this for any network module; it needs no DiT."""
    with pytest.raises(ConfigError, match=said):
        kind.check_network_args(kwargs)
