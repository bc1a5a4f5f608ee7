"""The training-step bench's bare loop on an in-memory tiny DiT: every option set runs and returns a full result;
option names become the trainer's flags and the trainer's parser accepts the bench's argv; the FLOP count matches
spec §9 at 1024². No timing is asserted."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import _step_common as common  # noqa: E402
import train_step as bench  # noqa: E402

from library.anima.llm_adapter import LLMAdapterConfig  # noqa: E402
from library.anima.model import AnimaConfig, AnimaDiT  # noqa: E402

ADAPTER = LLMAdapterConfig(source_dim=16, target_dim=32, model_dim=32, num_layers=1, num_heads=2, vocab_size=1000)
TINY = AnimaConfig(model_channels=32, num_blocks=3, num_heads=2, adaln_lora_dim=8, crossattn_emb_channels=32,
                   adapter=ADAPTER)


def make_dit() -> AnimaDiT:
    torch.manual_seed(0)
    return AnimaDiT(TINY)


@pytest.mark.parametrize("name", ["gc", "fp8_gc_swap1"])
def test_bare_loop_returns_a_result_per_option(name: str) -> None:
    result = common.bare_loop(make_dit, common.parse_option(name), steps=2, warmup=1, resolution=32, rank=4,
                             device=torch.device("cpu"), dtype=torch.float32)
    assert result.option == name
    assert result.s_per_step > 0 and result.peak_bytes > 0 and result.peak_kind == "process max RSS"
    assert len(result.losses) == 2 and all(math.isfinite(loss) for loss in result.losses)


def test_option_names_map_to_trainer_flags() -> None:
    assert common.parse_option("none").trainer_flags() == []
    assert common.parse_option("gc_offload").trainer_flags() == ["--gradient_checkpointing",
                                                               "--cpu_offload_checkpointing"]
    assert common.parse_option("fp8_gc_swap14_compile").trainer_flags() == [
        "--gradient_checkpointing", "--fp8_base", "--blocks_to_swap", "14", "--torch_compile"]
    for bad in ("offload", "swap", "gc_fast"):
        with pytest.raises(SystemExit):
            common.parse_option(bad)


def test_flops_follow_the_spec_split_at_1024() -> None:
    real = AnimaConfig()
    # spec §9: 0.48 TFLOP of Linears + 0.15 of attention per block forward, 28 blocks (≈ 18 TFLOP forward)
    no_gc, gc = bench.dit_step_flops(real, 1024, False), bench.dit_step_flops(real, 1024, True)
    assert 2 * 18e12 < no_gc < 3 * 18e12
    assert gc - no_gc == pytest.approx(17.7e12, rel=0.03)  # one more forward


def test_median_skips_warmup() -> None:
    assert common.median_step([0.0, 5.0, 6.0, 7.0, 9.0], warmup=1) == 1.0


def test_trainer_argv_parses_with_the_option_flags(tmp_path: Path) -> None:
    import _step_child
    import toml

    from anima_train_network import AnimaNetworkTrainer
    from library.args import parse_args

    paths = {key: str(tmp_path / key) for key in ("pretrained_model_name_or_path", "qwen3", "vae", "t5_tokenizer_path")}
    (tmp_path / "train_args.toml").write_text(toml.dumps(paths | {"gradient_checkpointing": True}))
    spec = {"work": str(tmp_path / "work"), "model_dir": str(tmp_path), "resolution": 64, "steps": 3, "rank": 8}
    argv = _step_child.trainer_argv(spec, common.parse_option("fp8_gc_swap2"), "no")
    args = parse_args(AnimaNetworkTrainer().setup_parser(), argv)
    assert args.fp8_base and args.gradient_checkpointing and args.blocks_to_swap == 2 and not args.torch_compile
    assert args.max_train_steps == 3 and args.network_dim == 8 and args.cache_latents
    assert toml.load(args.dataset_config)["datasets"][0]["subsets"][0]["num_repeats"] == 3
    plain = parse_args(AnimaNetworkTrainer().setup_parser(), _step_child.trainer_argv(spec, common.parse_option("none"), "no"))
    assert not plain.gradient_checkpointing  # the model folder's train_args.toml is not used as a config file


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_cuda_bench_without_cuda_is_one_error_line() -> None:
    """Caught: no check, so the run ended deep in torch with `AssertionError: Torch not compiled with CUDA`."""
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--device", "cuda"])
    assert str(info.value).startswith("error: --device cuda: ") and "leave --device at cpu" in str(info.value)
