"""The seed project's (FHfanshu sd-scripts-anima) options run with their meaning, or with one warning that says what
happens here instead (issue 18 points 1, 2 and 8).

Breaks these tests catch (each was made once and failed them):
- library/anima/seed_options.py `SEED_SAMPLERS["logit_normal"] = "sigmoid"` (the seed's shift dropped), or its
  default flow shift 1.0 instead of 3.0: the sampled sigmas leave the seed's distribution (the KS test);
- `uniform_shift` returning the unshifted uniform draw: the uniform KS test;
- `_map_sampling` without its contradiction check: `--timestep_sampling uniform` is silently replaced;
- library/anima/flow.py `offset_noise` drawing a per-pixel offset (shape of the noise): the offset is no longer
  constant over the image; without `offset *`: its spread is 1, not the offset; library/anima/network_trainer.py
  drawing the noise without `offset_noise`: the trainer test;
- `apply_seed_options` without the `args.xformers = True` line: `anima_attention_backend = "xformers"` says nothing;
- library/anima/attention_backend.py raising for xformers again: the attention tests and the tiny run fail;
- a `_SILENT_AT` entry removed or a warning loop dropped: that option is silent (the warning tests);
- library/seed_alerts.py without the spike warning, or `ask` not called under the raise policy: the monitor tests;
  library/train_loop.py handing SeedAlerts a `StopRequest()` of its own: the real run does not stop;
- library/option_support.py without `qwen3_max_token_length` in FLOW_NO_EFFECT: the tiny run's warning check;
- library/tracking.py `StepLogger.log` without `**extra`: the tiny run logs no `alert/loss_spike`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import toml
import torch
from _tiny_run import reset_accelerate, state_dict_of, tiny_model, train

from anima_train_network import AnimaNetworkTrainer
from library.anima.attention_backend import resolve_attn_mode
from library.anima.flow import offset_noise
from library.anima.seed_options import apply_seed_options
from library.args import parse_args
from library.errors import ConfigError
from library.registries.timesteps import sample_sigmas
from library.seed_alerts import SeedAlerts
from library.signals import MONITOR_EXIT, MONITOR_STOP, StopRequest, exit_code

PARSER = AnimaNetworkTrainer().setup_parser()
N = 20000


def seeded(*words: str) -> SimpleNamespace:
    args = parse_args(PARSER, list(words))
    apply_seed_options(args)
    return args


def seed_cdf(method: str, scale: float, shift: float, x: float) -> float:
    """P(sigma <= x) for the seed's sampler: sigma = k*u / (1 + (k-1)*u), u = sigmoid(scale * N(0,1)) or U(0,1)."""
    u = x / (shift - (shift - 1) * x)  # the shift's inverse
    if method == "uniform":
        return u
    z = math.log(u / (1 - u)) / scale
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize("words,method,scale,shift", [
    (["--anima_timestep_sampling", "logit_normal"], "logit_normal", 1.0, 3.0),  # the seed's defaults fill in
    (["--anima_sigmoid_scale", "1.5", "--anima_flow_shift", "2.0"], "logit_normal", 1.5, 2.0),
    (["--anima_timestep_sampling", "uniform"], "uniform", 1.0, 3.0),
    (["--anima_timestep_sampling", "uniform", "--anima_flow_shift", "1.0"], "uniform", 1.0, 1.0),
])
def test_the_seed_s_sampling_draws_the_seed_s_distribution(words: list[str], method: str, scale: float,
                                                          shift: float) -> None:
    args = seeded(*words)
    sigmas = sample_sigmas(args, N, (8, 8), "cpu", torch.Generator().manual_seed(0)).sort().values
    empirical = torch.arange(1, N + 1, dtype=torch.float64) / N
    formula = torch.tensor([seed_cdf(method, scale, shift, float(x)) for x in sigmas], dtype=torch.float64)
    assert float((empirical - formula).abs().max()) < 1.63 / math.sqrt(N)  # Kolmogorov-Smirnov at 1%


def test_the_seed_s_sampling_never_overrides_a_choice_of_ours() -> None:
    with pytest.raises(ConfigError, match="--timestep_sampling uniform contradicts"):
        seeded("--timestep_sampling", "uniform", "--anima_timestep_sampling", "logit_normal")
    with pytest.raises(ConfigError, match="--discrete_flow_shift 2.0 contradicts"):
        seeded("--discrete_flow_shift", "2", "--anima_flow_shift", "3")
    with pytest.raises(ConfigError, match="--anima_sigmoid_scale must be positive"):
        seeded("--anima_sigmoid_scale", "0")
    args = seeded("--anima_timestep_sampling", "logit_normal")
    apply_seed_options(args)  # the second pass (validate) sees its own mapping, not a contradiction
    assert (args.timestep_sampling, args.discrete_flow_shift) == ("shift", 3.0)
    assert seeded().timestep_sampling == "sigmoid"  # nothing set: our (the model author's) default stays


def test_the_noise_offset_is_one_normal_draw_per_sample_and_channel_times_the_offset() -> None:
    generators = [torch.Generator().manual_seed(i) for i in range(4000)]
    noise = torch.randn(4000, 16, 4, 4)
    added = offset_noise(noise, 0.1, generators) - noise
    per_channel = added[..., :1, :1]
    assert torch.allclose(added, per_channel.expand_as(added), atol=1e-6)  # the same at every pixel
    assert abs(float(per_channel.std()) - 0.1) < 0.002 and abs(float(per_channel.mean())) < 0.002
    assert offset_noise(noise, 0.0, generators) is noise and offset_noise(noise, None, generators) is noise


def test_the_trainer_adds_the_noise_offset_to_the_input_s_noise_and_the_target(tmp_path: Path) -> None:
    from library.anima.loading import load_anima_dit

    tiny = tiny_model(tmp_path / "tiny")
    trainer, seen = AnimaNetworkTrainer(), []
    dit = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    x0 = torch.randn(2, 16, 6, 4, generator=torch.Generator().manual_seed(0))
    text = [{"qwen_hidden": torch.randn(3, 16), "t5_ids": torch.tensor([5, 6, 1]), "t5_weights": torch.ones(3)}] * 2
    results = []
    for words in ([], ["--anima_noise_offset", "0.5"]):
        args = seeded("--config_file", str(tiny / "train_args.toml"), *words)
        generators = [torch.Generator().manual_seed(seed) for seed in (11, 12)]
        with torch.no_grad():
            _, target, sigmas, _ = trainer.get_noise_pred_and_target(
                args, None, SimpleNamespace(denoiser=Recorder(dit, seen)), x0, text, generators)
        results.append((seen.pop().squeeze(2), target, sigmas.view(-1, 1, 1, 1)))
    (_, plain, _), (x_t, target, sigma) = results
    added = target - plain
    assert torch.allclose(added, added[..., :1, :1].expand_as(added), atol=1e-5) and added.abs().min() > 0
    assert torch.allclose(x_t - sigma * target, x0, atol=1e-5)  # the model input carries the same offset noise


class Recorder(torch.nn.Module):
    """The DiT, keeping each input it is given."""

    def __init__(self, dit: torch.nn.Module, seen: list[torch.Tensor]) -> None:
        super().__init__()
        self.dit, self.llm_adapter, self.seen = dit, dit.llm_adapter, seen

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.dit(x, timesteps, context)


@pytest.mark.parametrize("attn_mode,xformers,split", [(None, True, False), (None, True, True),
                                                      ("xformers", False, True), ("sageattn", False, False)])
def test_attention_that_sdpa_covers_runs_as_sdpa_and_says_so_once(attn_mode: str | None, xformers: bool, split: bool,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert resolve_attn_mode(attn_mode, xformers, split) is None  # torch's own SDPA choice
    assert len(caplog.records) == 1 and "scaled_dot_product_attention (SDPA)" in caplog.text
    assert ("--split_attn is not needed" in caplog.text) == split


@pytest.mark.parametrize("words", [["--anima_attention_backend", "xformers"], ["--xfomers"]])
def test_the_seed_s_xformers_spellings_mean_xformers(words: list[str]) -> None:
    assert seeded(*words).xformers and not seeded("--anima_attention_backend", "torch").xformers


@pytest.mark.parametrize("words,said", [
    (["--anima_seq_len", "512"], "--anima_seq_len 512: captions are never truncated"),
    (["--anima_resume_snapshot_strict"], "--anima_resume_snapshot_strict True: --resume here always refuses"),
    (["--no-anima_resume_snapshot_strict"], "--anima_resume_snapshot_strict False: --resume here always refuses"),
    (["--resume_ignore_optimizer_mismatch"], "a state whose optimizer differs is refused"),
    (["--no-t5_tokenizer_validate_strict"], "the T5 tokenizer is always checked"),
    (["--auto_start_tensorboard", "--tensorboard_port", "6006"], "--auto_start_tensorboard --tensorboard_port: "
                                                                 "TensorBoard is not started"),
])
def test_each_seed_option_that_differs_warns_once(words: list[str], said: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        seeded(*words)
    assert len(caplog.records) == 1 and said in caplog.text


@pytest.mark.parametrize("words", [["--no-resume_ignore_optimizer_mismatch"], ["--t5_tokenizer_validate_strict"],
                                   ["--no-auto_start_tensorboard"], ["--anima_noise_offset", "0.0"]])
def test_a_seed_option_whose_meaning_holds_is_silent(words: list[str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        seeded(*words)
    assert not caplog.records


def test_the_monitor_warns_on_a_loss_spike_and_its_raise_policy_stops_on_memory(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    args = seeded("--anima_monitor_loss_spike_ratio", "3", "--anima_monitor_alert_policy", "raise",
                  "--anima_monitor_memory_warn_ratio", "0.9")
    gib = 1024 ** 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index: reserved[0])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda index: gib)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda index: 2 * gib)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: SimpleNamespace(total_memory=10 * gib))
    reserved, stop = [5 * gib], StopRequest()
    monitor = SeedAlerts(args, torch.device("cuda", 0), stop)
    with caplog.at_level(logging.WARNING):
        logs = [monitor.step(1, 0.1), monitor.step(2, 0.35), monitor.step(3, 0.5)]
    assert [log["alert/loss_spike"] for log in logs] == [0.0, 1.0, 0.0]
    assert "loss spike at step 2: 0.35 is more than 3 times the previous step's 0.1" in caplog.text
    assert logs[0]["gpu/mem_usage_ratio"] == 0.5 and logs[0]["gpu/mem_peak_allocated_mb"] == 2048
    assert not stop.requested
    reserved[0] = 9 * gib
    assert monitor.step(4, 0.5)["alert/memory_near_limit"] == 1.0
    assert stop.signum == MONITOR_STOP and exit_code(stop.signum) == MONITOR_EXIT
    stop.agree([stop.signum])
    assert stop.signal_name.startswith("--anima_monitor_alert_policy raise (GPU memory 90% reserved")


def test_a_monitor_stop_in_a_real_run_saves_a_state_and_prints_the_resume_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The memory alert itself needs CUDA (tested above); here the loop's half: a stop the monitor asks for at step
    2 ends the run like a signal, with exit code 4."""
    def step(self: SeedAlerts, step: int, loss: float) -> dict[str, float]:
        if step == 2:
            self.stop.alert_stop("--anima_monitor_alert_policy raise (test)")
        return {}

    monkeypatch.setattr(SeedAlerts, "step", step)
    tiny = tiny_model(tmp_path / "tiny")
    with pytest.raises(SystemExit) as stopped:
        train(tiny, tmp_path / "out", "--anima_monitor_alert_policy", "raise", "--max_train_steps", "5",
              "--logging_every_n_steps", "1")  # the monitor sees each step's loss when it is read
    assert stopped.value.code == MONITOR_EXIT
    said = capsys.readouterr().out
    assert "Stopped by --anima_monitor_alert_policy raise (test) at step 2." in said and "--resume" in said
    assert (tmp_path / "out" / "anima_tiny_lora-step00000002-state").is_dir()


def test_the_raise_policy_and_skipping_nan_steps_contradict() -> None:
    with pytest.raises(ConfigError, match="--nonfinite_loss skip"):
        AnimaNetworkTrainer().validate(seeded("--anima_monitor_alert_policy", "raise", "--nonfinite_loss", "skip"))


def test_a_seed_style_toml_with_every_seed_key_trains(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One tiny run from a train-args TOML written the way the seed's example files are, with all of its keys."""
    from anima_train_network import main

    tiny = tiny_model(tmp_path / "tiny")
    ours = toml.loads((tiny / "train_args.toml").read_text(encoding="utf-8"))
    lines = [f'anima_transformer = "{ours["pretrained_model_name_or_path"]}"',
             f'pretrained_model_name_or_path = "{ours["pretrained_model_name_or_path"]}"',
             f'vae = "{ours["vae"]}"', f'qwen = "{ours["qwen3"]}"', f't5_tokenizer_dir = "{ours["t5_tokenizer_path"]}"',
             f'dataset_config = "{ours["dataset_config"]}"', f'output_dir = "{tmp_path / "out"}"',
             'output_name = "seed_style"', 'network_module = "networks.lora_anima"', "network_dim = 4",
             "network_alpha = 4", "max_train_steps = 2", "learning_rate = 0.001", 'optimizer_type = "AdamW"',
             'lr_scheduler = "constant"', 'mixed_precision = "no"', "cache_latents = true",
             "cache_text_encoder_outputs = true", "max_data_loader_n_workers = 0", "seed = 42",
             "xformers = true", "xfomers = true", 'anima_attention_backend = "xformers"', "anima_seq_len = 128",
             'anima_timestep_sampling = "logit_normal"', "anima_sigmoid_scale = 1.0", "anima_flow_shift = 3.0",
             "anima_noise_offset = 0.05", "anima_monitor_memory = true", 'anima_monitor_alert_policy = "warn"',
             "anima_monitor_memory_warn_ratio = 0.95", "anima_monitor_loss_spike_ratio = 3.0",
             "anima_resume_snapshot_strict = false", "resume_ignore_optimizer_mismatch = true",
             "t5_tokenizer_validate_strict = false", "auto_start_tensorboard = true",
             'tensorboard_host = "127.0.0.1"', "tensorboard_port = 6006", "train_norm = true",
             "qwen3_max_token_length = 512", "t5_max_token_length = 512", f'logging_dir = "{tmp_path / "logs"}"']
    config = tmp_path / "anima_seed_style_train_args.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reset_accelerate()
    try:
        with caplog.at_level(logging.WARNING):
            main(["--config_file", str(config)])
    finally:
        reset_accelerate()
    lora = tmp_path / "out" / "seed_style.safetensors"
    assert state_dict_of(lora)
    from safetensors import safe_open

    with safe_open(str(lora), "pt") as file:
        meta = file.metadata()
    assert (meta["ss_timestep_sampling"], float(meta["ss_discrete_flow_shift"])) == ("shift", 3.0)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = (tmp_path / "logs").iterdir()
    events = EventAccumulator(str(run_dir / "network_train"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("alert/loss_spike")] == [1, 2]  # the seed's monitor, on our trackers
    text = caplog.text
    for said in ("--xformers: xformers computes the same attention", "--anima_seq_len 128:",
                 "--resume_ignore_optimizer_mismatch True:", "--t5_tokenizer_validate_strict False:",
                 "--anima_resume_snapshot_strict False:", "--auto_start_tensorboard --tensorboard_host",
                 "--anima_monitor_alert_policy warn: a NaN/inf loss still stops",
                 "--qwen3_max_token_length has no effect here: captions are never truncated",
                 "--t5_max_token_length has no effect here: captions are never truncated"):
        assert text.count(said) == 1, said
