"""kohya's --dim_from_weights and --base_weights: the network's shape from a file; LoRAs baked in before training."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import pytest
import toml
from _tiny_run import REPO, read_losses, state_dict_of, tiny_model, train

from library.errors import ConfigError
from library.network_setup import check_network_file_options, optimizer_params

sys.path.insert(0, str(REPO / "tools"))
import merge_anima_lora  # noqa: E402  (a script folder, not a package)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def rank8(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = train(tiny, tmp_path_factory.mktemp("rank8"), "--max_train_steps", "3", "--network_dim", "8",
                "--network_alpha", "2", "--learning_rate", "1e-2")
    return out / "anima_tiny_lora.safetensors"


def test_dim_from_weights_takes_rank_and_alpha_from_the_file(tiny: Path, rank8: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "b", "--max_train_steps", "1", "--network_dim", "4", "--dim_from_weights",
                "--network_weights", str(rank8))
    saved = state_dict_of(out / "anima_tiny_lora.safetensors")
    down = next(v for k, v in saved.items() if k.endswith("q_proj.lora_down.weight"))
    alpha = next(v for k, v in saved.items() if k.endswith("q_proj.alpha"))
    assert down.shape[0] == 8 and float(alpha) == 2.0


def test_base_weights_equal_training_on_a_merged_dit(tiny: Path, rank8: Path, tmp_path: Path) -> None:
    merged = tmp_path / "merged_dit.safetensors"
    assert merge_anima_lora.main(["--model", str(tiny / "models" / "anima_tiny.safetensors"), "--lora", str(rank8),
                                  "--ratio", "0.5", "--output", str(merged)]) == 0
    # SGD: the two merges round dW differently (~1e-7); Adam's sign-like first step would amplify that on
    # near-zero gradients, SGD keeps it ~1e-7, so the losses must agree closely on every step
    sgd = ("--max_train_steps", "3", "--optimizer_type", "SGDNesterov", "--learning_rate", "1e-2")
    on_merged = train(tiny, tmp_path / "merged", *sgd, "--pretrained_model_name_or_path", str(merged))
    with_base = train(tiny, tmp_path / "base", *sgd, "--base_weights", str(rank8), "--base_weights_multiplier", "0.5")
    plain = train(tiny, tmp_path / "plain", *sgd)
    a, b, c = read_losses(on_merged), read_losses(with_base), read_losses(plain)
    assert [pytest.approx(loss, abs=1e-5) for _, loss in a] == [loss for _, loss in b]
    assert abs(a[0][1] - c[0][1]) > 1e-3  # the base weights really changed the model


@pytest.mark.parametrize("changes,pattern", [
    ({"dim_from_weights": True}, "--dim_from_weights takes the network's ranks from --network_weights"),
    ({"base_weights": ["missing.safetensors"]}, "--base_weights missing.safetensors: no such file"),
    ({"base_weights": [__file__], "base_weights_multiplier": [1.0, 0.5]}, "has 2 values for 1 --base_weights"),
])
def test_bad_combinations_fail_at_start_up(changes: dict, pattern: str) -> None:
    args = Namespace(network_weights=None, base_weights=None, base_weights_multiplier=None, dim_from_weights=False)
    for key, value in changes.items():
        setattr(args, key, value)
    with pytest.raises(ConfigError, match=pattern):
        check_network_file_options(args)


class _KohyaStyle:
    def prepare_optimizer_params(self, text_encoder_lr, unet_lr, default_lr=None):
        return [{"lr": unet_lr}], ["unet"]


class _TakesAny(_KohyaStyle):
    def prepare_optimizer_params(self, text_encoder_lr, unet_lr, default_lr=None, **kwargs):
        return [{"lr": unet_lr} | kwargs], ["unet"]


def test_group_lrs_reach_only_networks_that_take_them(caplog: pytest.LogCaptureFixture) -> None:
    """The TypeError of kohya/LyCORIS networks (issue 18): our llm_adapter_lr / norm_lr are not passed to a network
    whose prepare_optimizer_params does not name them (and say so once set); **kwargs takes them. Break caught:
    passing them always (TypeError)."""
    args = Namespace(text_encoder_lr=None, unet_lr=1e-4, learning_rate=1e-3, llm_adapter_lr=5e-5, norm_lr=None,
                     network_module="their.network")
    assert optimizer_params(_KohyaStyle(), args) == ([{"lr": 1e-4}], ["unet"])
    assert "--llm_adapter_lr 5e-05 has no effect with --network_module their.network" in caplog.text
    assert optimizer_params(_TakesAny(), args)[0] == [{"lr": 1e-4, "llm_adapter_lr": 5e-5, "norm_lr": None}]


def test_a_base_lora_with_a_qwen3_part_is_merged_before_the_text_is_cached(tiny: Path, tmp_path: Path) -> None:
    """kohya merges --base_weights right after loading the models, before caching: text cached from the merged Qwen3
    trains exactly as text encoded live by it. Break caught: merging after the caches are filled (the cached run
    then trains on the unmerged Qwen3's text and its losses leave the live run's)."""
    live_text = tmp_path / "live_text"
    live_text.mkdir()
    config = toml.loads((tiny / "train_args.toml").read_text(encoding="utf-8"))
    config["cache_text_encoder_outputs"] = False  # kohya's rule: uncached text trains a Qwen3 LoRA too
    (live_text / "train_args.toml").write_text(toml.dumps(config), encoding="utf-8")
    with_te = train(live_text, tmp_path / "te", "--max_train_steps", "2", "--text_encoder_lr", "5e-2")
    base_file = with_te / "anima_tiny_lora.safetensors"
    assert any(key.startswith("lora_te_") for key in state_dict_of(base_file))
    base = ("--max_train_steps", "2", "--base_weights", str(base_file))
    cached = read_losses(train(tiny, tmp_path / "cached", *base))
    live = read_losses(train(live_text, tmp_path / "live", *base, "--network_train_unet_only"))
    assert [pytest.approx(loss, abs=1e-6) for _, loss in live] == [loss for _, loss in cached]
