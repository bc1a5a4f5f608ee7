"""Every option we accept either acts or says at start-up that it does not (issue 24 point 5): kohya's SD-only
options (`--noise_offset`, `--min_snr_gamma`, ...) warn with the option's name and why, `--full_bf16` / `--full_fp16`
without their mixed precision are refused as in kohya, and a prompt file with no time to sample (or the reverse)
warns. `--no_half_vae` does act: the VAE loads in fp32. The docs offer no option without effect as a fix.

Breaks these tests catch (each was made once and failed them):
- library/option_support.py without an entry of `FLOW_NO_EFFECT` (e.g. noise_offset): its option is silent again
  (the table test and the warning test); the warning loop over `NO_EFFECT` alone: every SD option is silent;
- `check_option_pairs` without its precision check: `--full_bf16` under `--mixed_precision no` trains; without the
  `not when` warning: `--sample_prompts` alone is silent;
- anima_train_network.py `load_target_model` with `vae_dtype = weight_dtype`: `--no_half_vae` does nothing;
- docs/troubleshooting.md offering `--vae_disable_cache` (or `--llm_adapter_path`) as a fix again.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _tiny_run import tiny_model, train

from anima_train_network import AnimaNetworkTrainer
from library.args import parse_args
from library.arguments.types import NO_EFFECT as NO_EFFECT_MARK
from library.option_support import FLOW_NO_EFFECT, NO_EFFECT, REFUSED, check_option_support

REPO = Path(__file__).resolve().parents[1]
PARSER = AnimaNetworkTrainer().setup_parser()
ACTIONS = {action.dest: action for action in PARSER._actions}
FIX_DOCS = ["README.md", "docs/troubleshooting.md", "docs/quickstart.md", "docs/memory_and_speed.md"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def setting(dest: str) -> list[str]:
    """Command-line words that set option `dest` to something other than its default."""
    action = ACTIONS[dest]
    flag = action.option_strings[0]
    if action.nargs == 0:
        return [flag]
    return [flag, str(next(c for c in action.choices if c is not None)) if action.choices else "1"]


def test_every_option_whose_help_says_no_effect_is_in_the_warning_table() -> None:
    marked = {dest for dest, action in ACTIONS.items() if NO_EFFECT_MARK in (action.help or "")}
    assert marked - set(FLOW_NO_EFFECT) == {"multires_noise_discount"}  # acts only with multires_noise_iterations
    assert set(FLOW_NO_EFFECT) | set(NO_EFFECT) | set(REFUSED) <= set(ACTIONS)


@pytest.mark.parametrize("dest", sorted(FLOW_NO_EFFECT | NO_EFFECT))
def test_an_option_without_effect_warns_with_its_name_and_why(dest: str, caplog: pytest.LogCaptureFixture) -> None:
    args = parse_args(PARSER, setting(dest))
    with caplog.at_level(logging.WARNING):
        check_option_support(args)
    reason = (FLOW_NO_EFFECT | NO_EFFECT)[dest]
    assert f"--{dest} has no effect here: {reason}." in caplog.text


@pytest.mark.parametrize("words", [["--noise_offset", "0.1"], ["--min_snr_gamma", "5"]])
def test_the_issue_s_examples_warn_in_a_real_start_up(tiny: Path, tmp_path: Path, words: list[str],
                                                      caplog: pytest.LogCaptureFixture) -> None:
    trainer = AnimaNetworkTrainer()
    args = parse_args(trainer.setup_parser(), ["--config_file", str(tiny / "train_args.toml"),
                                               "--output_dir", str(tmp_path), *words])
    with caplog.at_level(logging.WARNING):
        trainer.validate(args)
    assert f"{words[0]} has no effect here" in caplog.text


@pytest.mark.parametrize("full,precision", [("--full_bf16", "bf16"), ("--full_fp16", "fp16")])
def test_full_half_precision_needs_its_mixed_precision(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       full: str, precision: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        train(tiny, tmp_path, full)  # the tiny config trains in fp32 (--mixed_precision no)
    assert stopped.value.code == 2
    assert f"error: {full} needs --mixed_precision {precision} (got no)" in capsys.readouterr().err
    check_option_support(parse_args(PARSER, [full, "--mixed_precision", precision]))


@pytest.mark.parametrize("words,said", [
    (["--sample_prompts", "p.txt"], "no time to sample is set"),
    (["--sample_every_n_steps", "5"], "--sample_every_n_steps: no sample images will be made without --sample_prompts"),
])
def test_sampling_options_that_cannot_sample_warn(words: list[str], said: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_option_support(parse_args(PARSER, words))
    assert said in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_option_support(parse_args(PARSER, ["--sample_prompts", "p.txt", "--sample_at_first"]))
    assert "no sample images" not in caplog.text


@pytest.mark.parametrize("no_half_vae,dtype", [(False, torch.bfloat16), (True, torch.float32)])
def test_no_half_vae_loads_the_vae_in_fp32(tiny: Path, monkeypatch: pytest.MonkeyPatch, no_half_vae: bool,
                                           dtype: torch.dtype) -> None:
    import anima_train_network

    seen = {}

    def load(path: str, dtype: torch.dtype, device: object) -> object:
        seen["dtype"] = dtype
        raise StopIteration  # the VAE is all this test needs to see

    monkeypatch.setattr(anima_train_network.AnimaVAE, "load", staticmethod(load))
    args = SimpleNamespace(pretrained_model_name_or_path=str(tiny / "models" / "anima_tiny.safetensors"),
                           fp8_base=False, fp8_base_unet=False, no_half_vae=no_half_vae, vae=None)
    with pytest.raises(StopIteration):
        AnimaNetworkTrainer().load_target_model(args, SimpleNamespace(device=torch.device("cpu")), torch.bfloat16)
    assert seen["dtype"] == dtype


@pytest.mark.parametrize("doc", FIX_DOCS)
def test_the_docs_offer_no_option_without_effect_as_a_fix(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    for dest in FLOW_NO_EFFECT | NO_EFFECT:
        for match in re.finditer(rf"--{dest}\b", text):
            line = text[text.rfind("\n", 0, match.start()) + 1:text.find("\n", match.end())]
            assert "no effect" in line, f"{doc} offers --{dest}, which has no effect: {line}"
