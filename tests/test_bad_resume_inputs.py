"""A damaged `--resume` folder, or a resume with another optimizer, stops with `error: ...` (exit 2) before any model
loads, naming the file or the option (issue 17 point 5), instead of a JSONDecodeError, a torch unpickling error or
`KeyError: 'momentum'` after the DiT loaded.

Breaks these tests catch (each was made once and failed them):
- library/input_checks.py `check_inputs` without its `check_state_files` call: every damaged file reaches the load;
- `_archive_problem` without `archive.testzip()` (directory only): a flipped byte inside optimizer.bin passes;
- `check_state_files` without the model.safetensors header check: a truncated model.safetensors passes;
- library/state.py `read_train_state` without its try/except: a JSONDecodeError / KeyError traceback;
- library/trainer.py `state_identity` without `| optimizer_identity(args)`: another optimizer, or other
  --optimizer_args, resumes and fails later;
- library/registries/optimizers `optimizer_identity` with raw values instead of repr: a tuple argument
  (betas=(0.9,0.99)) no longer equals itself after train_state.json, and the same setup is refused.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from _tiny_run import flip_middle, tiny_model, train

from anima_train_network import AnimaNetworkTrainer
from library.args import parse_args
from library.errors import ConfigError

NAME = "anima_tiny_lora"
BETAS = ("--optimizer_args", "betas=(0.9,0.99)")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tiny = tiny_model(tmp_path_factory.mktemp("tiny"))
    out = train(tiny, tmp_path_factory.mktemp("written") / "run", "--max_train_steps", "1", "--save_state", *BETAS)
    return {"tiny": tiny, "state": out / f"{NAME}-state"}


@pytest.fixture(autouse=True)
def models_must_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the models started loading before the bad state was refused")

    monkeypatch.setattr(AnimaNetworkTrainer, "load_target_model", refuse)


def damaged_copy(setup: dict[str, Path], tmp_path: Path, name: str, damage: Callable[[bytes], bytes | None]) -> Path:
    """A copy of the state with `name` replaced by `damage(its bytes)`, or deleted when that is None."""
    state = shutil.copytree(setup["state"], tmp_path / f"{NAME}-state")
    data = damage((state / name).read_bytes())
    if data is None:
        (state / name).unlink()
    else:
        (state / name).write_bytes(data)
    return state


DAMAGES = {
    "optimizer_truncated": ("optimizer.bin", lambda d: d[: len(d) // 2], "optimizer.bin is damaged"),
    "optimizer_flipped": ("optimizer.bin", flip_middle, "optimizer.bin is damaged"),
    "optimizer_missing": ("optimizer.bin", lambda d: None, "optimizer.bin is missing"),
    "scheduler_garbage": ("scheduler.bin", lambda d: b"not a zip", "scheduler.bin is damaged"),
    "rng_truncated": ("random_states_0.pkl", lambda d: d[:100], "random_states_0.pkl is damaged"),
    "model_truncated": ("model.safetensors", lambda d: d[:-64], "model.safetensors is damaged"),
    "model_missing": ("model.safetensors", lambda d: None, "model.safetensors is missing"),
    "info_truncated": ("train_state.json", lambda d: d[: len(d) // 2], "train_state.json is damaged"),
    "info_not_json": ("train_state.json", lambda d: b"\xff\xfe garbage", "train_state.json is damaged"),
    "info_without_step": ("train_state.json", lambda d: b'{"current_epoch": 1}', "train_state.json is damaged"),
    "info_a_list": ("train_state.json", lambda d: b"[1, 2]", "train_state.json is damaged"),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_a_damaged_state_is_refused_naming_the_file(setup: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], case: str) -> None:
    name, damage, expected = DAMAGES[case]
    state = damaged_copy(setup, tmp_path, name, damage)
    with pytest.raises(SystemExit) as stopped:
        train(setup["tiny"], tmp_path / "out", "--max_train_steps", "3", "--resume", str(state), *BETAS)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err, err
    said = err[err.index("error: "):]
    assert f"--resume {state}" in said and expected in said and "Use another" in said
    assert not (tmp_path / "out").exists()


def validate(setup: dict[str, Path], state: Path, *extra: str) -> None:
    trainer = AnimaNetworkTrainer()
    args = parse_args(trainer.setup_parser(), ["--config_file", str(setup["tiny"] / "train_args.toml"),
                                               "--output_dir", str(state.parent / "resumed"),
                                               "--resume", str(state), *extra])
    trainer.validate(args)


def test_the_same_setup_resumes(setup: dict[str, Path]) -> None:
    validate(setup, setup["state"], "--optimizer_args", "betas = (0.9, 0.99)")  # spelt differently, same value
    saved = json.loads((setup["state"] / "train_state.json").read_text(encoding="utf-8"))["identity"]
    assert saved["optimizer_type"] == "AdamW" and saved["optimizer_args"] == {"betas": "(0.9, 0.99)"}


@pytest.mark.parametrize("extra,diff", [
    (("--optimizer_type", "SGDNesterov"), "optimizer_type: state has 'AdamW', this run has 'SGDNesterov'"),
    (("--optimizer_args", "betas=(0.8,0.99)"), "optimizer_args: state has {'betas': '(0.9, 0.99)'}"),
    ((), "this run has {}"),
])
def test_another_optimizer_is_refused_at_start(setup: dict[str, Path], extra: tuple[str, ...], diff: str) -> None:
    with pytest.raises(ConfigError, match="written by a different setup") as refused:
        validate(setup, setup["state"], *extra)
    assert diff in str(refused.value)


def test_an_old_state_without_the_optimizer_record_resumes(setup: dict[str, Path], tmp_path: Path) -> None:
    old = shutil.copytree(setup["state"], tmp_path / f"{NAME}-state")
    info = json.loads((old / "train_state.json").read_text(encoding="utf-8"))
    info["identity"] = {k: v for k, v in info["identity"].items() if not k.startswith("optimizer_")}
    (old / "train_state.json").write_text(json.dumps(info), encoding="utf-8")
    validate(setup, old, "--optimizer_type", "SGDNesterov")
