"""A whole file in the wrong slot is recognised by its content and the one `error:` line says where it belongs
(issue 24 point 6): a dataset config as --config_file and the reverse, a LoRA file as --resume, a Windows path in a
double-quoted TOML string, and a DiT or VAE given where a LoRA is read (--network_weights, the LoRA tools).

Breaks these tests catch (each was made once and failed them):
- library/config_file.py `read_toml` without its `is_dataset_config` check: "unknown key `general`";
- library/dataset/schema.py `load_dataset_config` without its `is_train_args` check: a line per unknown key;
- library/config_kinds.py `is_train_args` needing 3 known keys: a sectioned train-args file with two is not told;
  `load_toml` without its escape branch: "Reserved escape sequence"; without the control-character scan:
  "D:\\new\\test" is read as a newline and a tab, silently;
- library/state.py `read_train_state` without its `is_file` branch: "no such folder", no word of --network_weights;
- tools/_lora_read.py `read_adapter_file` without `not_an_adapter`: a DiT gets "89 unknown keys"-style errors;
- networks/_plan.py `check_weights_fit` without `not_an_adapter`: a VAE as --network_weights gets "no key matches".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _tiny_run import forbid_model_loads, tiny_model, train

from anima_train_network import main
from library.config_kinds import load_toml
from library.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def models_must_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_model_loads(monkeypatch)


def error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The single `error:` line of a run that stops with exit code 2."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def test_a_dataset_config_as_config_file_says_dataset_config(tiny: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    said = error_line(capsys, ["--config_file", str(tiny / "dataset.toml"), "--output_dir", str(tmp_path)])
    assert "this is a dataset config" in said and f"pass it as --dataset_config {tiny / 'dataset.toml'}" in said


def test_train_args_as_dataset_config_is_one_line_saying_config_file(tiny: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    train_args = tiny / "train_args.toml"
    with pytest.raises(SystemExit):
        train(tiny, tmp_path / "out", dataset=train_args)
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "unknown key" not in err, err
    assert "this is a train arguments file" in err and f"pass it as --config_file {train_args}" in err


def test_a_sectioned_train_args_file_is_recognised(tmp_path: Path) -> None:
    from library.config_kinds import is_dataset_config, is_train_args

    sectioned = {"model": {"pretrained_model_name_or_path": "a"}, "training": {"learning_rate": 1e-4}}
    assert is_train_args(sectioned) and not is_dataset_config(sectioned)
    assert not is_train_args({"general": {"caption_extension": ".txt"}, "datasets": [{}]})


def test_a_lora_file_as_resume_points_to_network_weights(tiny: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    lora = tmp_path / "my_lora.safetensors"
    lora.write_bytes(b"x")
    base = ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(tmp_path / "out")]
    said = error_line(capsys, base + ["--resume", str(lora)])
    assert "--resume takes a state folder" in said and f"--network_weights {lora}" in said
    state = tmp_path / "run-step00000010-state"
    state.mkdir()
    (state / "train_state.json").write_text(json.dumps({}), encoding="utf-8")
    (state / "model.safetensors").write_bytes(b"x")
    said = error_line(capsys, base + ["--resume", str(state / "model.safetensors")])
    assert f"This file is inside one: pass --resume {state}" in said


@pytest.mark.parametrize("text", ['output_dir = "C:\\Users\\me\\out"\n', 'logging_dir = "D:\\new\\test"\n'])
def test_a_windows_path_in_double_quotes_says_single_quotes_or_slashes(tiny: Path, tmp_path: Path, text: str,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "windows.toml"
    config.write_text(text, encoding="utf-8")
    said = error_line(capsys, ["--config_file", str(config)])
    assert "a Windows path in double quotes" in said and "single quotes" in said and "C:/Users" in said


def test_a_windows_path_in_a_dataset_config_too(tiny: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset.toml"
    dataset.write_text('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "C:\\Users\\me\\images"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="--dataset_config .*line 3: a Windows path in double quotes"):
        from library.dataset.schema import load_dataset_config
        load_dataset_config(str(dataset))


def test_windows_paths_written_the_right_way_read_as_written(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text("a = 'C:\\Users\\me'\nb = \"C:\\\\Users\\\\me\"\nc = \"C:/Users/me\"\n", encoding="utf-8")
    assert load_toml(config, "--config_file") == {"a": "C:\\Users\\me", "b": "C:\\Users\\me", "c": "C:/Users/me"}


@pytest.mark.parametrize("name,slot", [("anima_tiny", "--pretrained_model_name_or_path"),
                                       ("qwen_image_vae_tiny", "--vae")])
def test_a_model_file_given_to_the_lora_tool_says_where_it_belongs(tiny: Path, tmp_path: Path, name: str, slot: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import convert_anima_lora  # tools/ is on sys.path through _tiny_run

    code = convert_anima_lora.main([str(tiny / "models" / f"{name}.safetensors"), "--output",
                                    str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error: ") == 1 and "unknown" not in err, err
    assert f"not a LoRA / LoKr: its header is that of a file for {slot}" in err


def test_a_vae_as_network_weights_says_vae(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vae = tiny / "models" / "qwen_image_vae_tiny.safetensors"
    said = error_line(capsys, ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(tmp_path),
                               "--network_weights", str(vae)])
    assert f"--network_weights {vae}: not a LoRA / LoKr: its header is that of a file for --vae" in said
