"""kohya options we accept but do not act on say so in --help, warn or refuse at start-up; the cheap ones work."""

from __future__ import annotations

import logging
from argparse import Namespace

import pytest
import torch

from anima_train_network import AnimaNetworkTrainer
from library.args import parse_args, setup_console_logging
from library.errors import ConfigError
from library.option_support import NO_EFFECT, REFUSED, check_option_support

PARSER = AnimaNetworkTrainer().setup_parser()


def test_help_names_every_unsupported_option() -> None:
    helps = {action.dest: action.help or "" for action in PARSER._actions}
    for dest in NO_EFFECT:
        assert helps[dest].endswith(f"(No effect here: {NO_EFFECT[dest]}.)"), dest
    for dest in REFUSED:
        assert helps[dest].endswith(f"(Not supported: {REFUSED[dest]}.)"), dest
    PARSER_AGAIN = AnimaNetworkTrainer().setup_parser()  # noqa: N806 - annotating twice adds nothing
    assert {a.dest: a.help for a in PARSER_AGAIN._actions} == helps


@pytest.mark.parametrize("argv,dest", [(["--initial_step", "3"], "initial_step"), (["--dataset_class", "a.B"],
                                                                                   "dataset_class")])
def test_refused_options_fail_with_the_alternative(argv: list[str], dest: str) -> None:
    with pytest.raises(ConfigError, match=f"--{dest}: {REFUSED[dest]}"):
        check_option_support(parse_args(PARSER, argv))


def test_no_effect_options_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_option_support(parse_args(PARSER, ["--vae_disable_cache", "--highvram"]))
    assert "--vae_disable_cache has no effect here" in caplog.text and "--highvram has no effect here" in caplog.text
    caplog.clear()
    check_option_support(parse_args(PARSER, []))
    assert not caplog.text


def test_console_log_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "run.log"
    setup_console_logging(parse_args(PARSER, ["--console_log_level", "WARNING", "--console_log_file", str(log),
                                              "--console_log_simple"]))
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    setup_console_logging(parse_args(PARSER, []))  # back to stderr; closes the file handler
    assert log.read_text(encoding="utf-8").splitlines() == ["shown"]
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "sd-scripts-anima-console"]
    assert len(ours) == 1 and isinstance(ours[0], logging.StreamHandler)


def test_ip_noise_random_strength_scales_the_perturbation_per_sample() -> None:
    """With random strength the extra noise differs per sample and stays within [0, gamma] of the fixed one."""
    trainer = AnimaNetworkTrainer()
    captured = {}

    class Dit(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))
            self.llm_adapter = None

        def forward(self, x, sigmas, context):  # type: ignore[no-untyped-def]
            captured.setdefault("x", []).append(x)
            return x

    from library.anima import network_trainer

    def fake_context(adapter, batch):  # type: ignore[no-untyped-def]
        return torch.zeros(2, 4, 3)

    original = network_trainer.build_context
    network_trainer.build_context = fake_context
    try:
        latents = torch.zeros(2, 16, 4, 4)
        text = [{"qwen_hidden": torch.zeros(1, 3), "t5_ids": torch.ones(1, dtype=torch.long),
                 "t5_weights": torch.ones(1)}] * 2
        models = Namespace(denoiser=Dit())
        for extra in (["--ip_noise_gamma", "0"], ["--ip_noise_gamma", "0.5"],
                      ["--ip_noise_gamma", "0.5", "--ip_noise_gamma_random_strength"]):
            args = parse_args(PARSER, ["--timestep_sampling", "uniform", *extra])
            trainer.get_noise_pred_and_target(args, None, models, latents, text,
                                              [torch.Generator().manual_seed(s) for s in (1, 2)])
    finally:
        network_trainer.build_context = original
    plain, fixed, random_strength = captured["x"]  # sigma * (noise + gamma_eff * extra_noise), same draws
    ratio = (random_strength - plain) / (fixed - plain)  # one factor u in [0, 1] per sample
    per_sample = ratio.flatten(1)
    usable = (fixed - plain).flatten(1).abs() > 1e-2  # where the perturbation is tiny, fp32 cancellation rules
    u = torch.stack([row[keep].median() for row, keep in zip(per_sample, usable, strict=True)])
    assert torch.allclose(per_sample[usable], u[:, None].expand_as(per_sample)[usable], atol=1e-4)
    assert ((u >= 0) & (u <= 1)).all() and not torch.allclose(u[0], u[1])
