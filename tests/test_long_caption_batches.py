"""A batch that holds a caption longer than 512 T5 tokens (issue 21 point 1).

ComfyUI conditions each caption alone and pads its context to max(512, own T5 length) rows (`comfy/model_base.py`,
Anima's `extra_conds`); the DiT's cross-attention has no key mask, so every zero row takes softmax weight. So in a
batch, each sample's prediction must equal the prediction for that sample alone, whatever the other captions'
lengths. Through the trainer's own `get_noise_pred_and_target`; each sample's noise and noise level come from its
own generator, so alone and batched draw the same numbers.

Tolerance 1e-5 relative: batched and single matmuls sum in other orders (measured differences below 1e-6); the
break below moves the tag-list caption by 3e-2 relative on the tiny model.
Break this catches (run once, it failed): library/anima/network_trainer.py calling `dit(x, sigmas, context)` on the whole
batch's context instead of `run_per_context_length`.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
import torch
from _tiny_run import tiny_model

from anima_train_network import AnimaNetworkTrainer
from library.anima.conditioning import context_groups
from library.anima.loading import load_anima_dit
from library.anima.text import AnimaTextEncoder
from library.anima.tokenizers import load_t5_tokenizer
from library.args import parse_args

LONG = ", ".join(f"tag{i} detail{i}" for i in range(200))  # well past 512 T5 tokens
CAPTIONS = [LONG, "1girl, solo, red hair, smile, looking at viewer", ""]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def predict(trainer: AnimaNetworkTrainer, args: Namespace, dit: torch.nn.Module, x0: torch.Tensor,
            text: list[dict[str, torch.Tensor]], seeds: list[int]) -> torch.Tensor:
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    with torch.no_grad():
        pred, _target, _sigmas, _ = trainer.get_noise_pred_and_target(args, None, Namespace(denoiser=dit), x0, text,
                                                                      generators)
    return pred


def test_each_sample_of_a_mixed_length_batch_is_predicted_as_if_alone(tiny: Path) -> None:
    trainer = AnimaNetworkTrainer()
    args = parse_args(trainer.setup_parser(), ["--config_file", str(tiny / "train_args.toml")])
    dit = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    encoder = AnimaTextEncoder.load(tiny / "models" / "qwen3_tiny.safetensors",
                                    t5_tokenizer=load_t5_tokenizer(tiny / "models" / "t5_tokenizer"))
    encodings = encoder.encode(CAPTIONS)
    assert encodings[0].t5_ids.shape[0] > 512 and encodings[1].t5_ids.shape[0] < 512
    text = [{"qwen_hidden": e.qwen_hidden, "t5_ids": e.t5_ids, "t5_weights": e.t5_weights} for e in encodings]
    x0 = torch.randn(len(CAPTIONS), 16, 6, 4, generator=torch.Generator().manual_seed(0)) * 0.5
    seeds = [11, 12, 13]
    batched = predict(trainer, args, dit, x0, text, seeds)
    for i in range(len(CAPTIONS)):
        alone = predict(trainer, args, dit, x0[i:i + 1], text[i:i + 1], seeds[i:i + 1])[0]
        relative = float((batched[i] - alone).norm() / alone.norm())
        assert relative <= TOLERANCE, f"caption {i}: {relative:.2e} relative"


def test_batches_without_a_long_caption_stay_one_group() -> None:
    """The common case runs as one batch: one DiT call over 512 rows."""
    mask = torch.zeros(3, 40, dtype=torch.bool)
    for row, length in enumerate((40, 7, 0)):
        mask[row, :length] = True
    assert [(index.tolist(), rows) for index, rows in context_groups(mask)] == [([0, 1, 2], 512)]
    mask = torch.zeros(3, 600, dtype=torch.bool)
    for row, length in enumerate((600, 7, 512)):
        mask[row, :length] = True
    assert [(index.tolist(), rows) for index, rows in context_groups(mask)] == [([1, 2], 512), ([0], 600)]
