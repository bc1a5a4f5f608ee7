"""kohya's sample-prompt files: txt flags, toml subsets, json lists; bad entries named by place and skipped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from library.errors import ConfigError
from library.sample_prompts import SamplePrompt, load_sample_prompts, validate_sample_prompts


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_flags_case_insensitive_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "# comment\n\n"
                 "(masterpiece:1.2), 1girl --n worst quality, blurry --W 832 --h 1216 --D 42 --s 20 --L 5.5 "
                 "--fs 2.5 --SS Euler\n"
                 "  a cat  \n")
    first, second = load_sample_prompts(path)
    assert first == SamplePrompt(index=0, prompt="(masterpiece:1.2), 1girl", negative_prompt="worst quality, blurry",
                                 width=832, height=1216, seed=42, steps=20, scale=5.5, flow_shift=2.5,
                                 sampler="euler")
    # ComfyUI's reference settings, not kohya-Anima's 512² / CFG 7.5
    assert second == SamplePrompt(index=1, prompt="a cat", negative_prompt="", width=1024, height=1024, seed=None,
                                  steps=30, scale=4.0, flow_shift=3.0, sampler=None)


def test_steps_are_clamped_like_kohya(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "x --s 5000\ny --s 0\n")
    assert [p.steps for p in load_sample_prompts(path)] == [1000, 1]


def test_bad_flags_skip_the_line_and_name_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "p.txt", "good one --d 1\n"
                 "bad width --w wide\n"
                 "# skipped comment\n"
                 "unknown flag --zz 3\n"
                 "negative seed --d -4\n"
                 "other-model flag --g 3.5\n"
                 "good two\n")
    with caplog.at_level(logging.WARNING):
        prompts = load_sample_prompts(path)
    assert [p.prompt for p in prompts] == ["good one", "other-model flag", "good two"]
    assert [p.index for p in prompts] == [0, 1, 2]  # numbered after skipping, as kohya's enum
    text = caplog.text
    assert f"{path}:2" in text and "'width'" in text
    assert f"{path}:4" in text and "--zz" in text
    assert f"{path}:5" in text
    assert "guidance_scale" in text and "no effect" in text
    assert f"{path}:1:" not in text and f"{path}:7" not in text


def test_toml_subsets_merge_over_shared_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "p.toml", """
[prompt]
negative_prompt = "lowres"
width = 768
sample_steps = 12

[[prompt.subset]]
prompt = "a fox"
seed = 7

[[prompt.subset]]
prompt = "a bird"
width = 512
scale = 1.0
sample_sampler = "dpmpp_2m"
""")
    fox, bird = load_sample_prompts(path)
    assert (fox.prompt, fox.negative_prompt, fox.width, fox.steps, fox.seed) == ("a fox", "lowres", 768, 12, 7)
    assert (bird.width, bird.scale, bird.sampler, bird.negative_prompt) == (512, 1.0, "dpmpp_2m", "lowres")


def test_json_dicts_and_strings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    items = [{"prompt": "a fox", "seed": 3, "height": 640, "controlnet_image": None},
             "a bird --n ugly --s 8",
             {"prompt": "bad", "width": True},
             {"negative_prompt": "no prompt key"},
             {"prompt": "typo", "sead": 1}]
    path = write(tmp_path, "p.json", json.dumps(items))
    with caplog.at_level(logging.WARNING):
        prompts = load_sample_prompts(path)
    assert [(p.prompt, p.seed, p.height) for p in prompts] == [("a fox", 3, 640), ("a bird", None, 1024)]
    assert prompts[1].negative_prompt == "ugly" and prompts[1].steps == 8
    assert "item 3" in caplog.text and "item 4" in caplog.text and "'sead'" in caplog.text


@pytest.mark.parametrize(("name", "text", "needle"), [
    ("missing.txt", None, "no such file"),
    ("p.toml", "[prompt\n", "not valid TOML"),
    ("p.toml", "[other]\nx = 1\n", "[prompt]"),
    ("p.json", "{not json", "not valid JSON"),
    ("p.json", '{"prompt": "x"}', "JSON list"),
    ("p.yaml", "prompt: x", ".txt, .toml or .json"),
])
def test_unusable_files_raise_config_error_naming_them(tmp_path: Path, name: str, text: str | None,
                                                       needle: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="--sample_prompts") as info:
        validate_sample_prompts(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_unreadable_bytes_raise_config_error(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="cannot read"):
        load_sample_prompts(path)


def test_validate_refuses_empty_files_and_unknown_samplers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no usable prompt"):
        validate_sample_prompts(write(tmp_path, "empty.txt", "# only a comment\n\n"))
    path = write(tmp_path, "p.txt", "a --ss euler\nb --ss DDIM\n")
    with pytest.raises(ConfigError, match="'ddim'.*euler"):
        validate_sample_prompts(path, ["euler", "er_sde"])
    assert len(validate_sample_prompts(path)) == 2  # without names, the sampler is not judged here
