"""The DiT's expected key list, written out without torch for the start-up check, is exactly the state dict of the
model that loads the file: for the tiny test model, the real 2B configuration, a model without its adapter, and an
adapter whose width differs from the context (which adds `in_proj`).

Breaks this catches (each tried once, each failed): `in_proj` keys left out of `dit_keys._adapter` (the narrow
adapter case); the final layer's modulation written with 3 chunks instead of 2 in `expected_shapes` (every case).
"""

from __future__ import annotations

import pytest
import torch
from _tiny_run import REPO  # noqa: F401  (puts tools/ on the path)
from make_tiny_anima import tiny

from library.anima.config import AnimaConfig, LLMAdapterConfig
from library.anima.dit_keys import expected_shapes
from library.anima.model import AnimaDiT

CONFIGS = {
    "tiny": tiny().dit,
    "real 2B": AnimaConfig(),
    "no adapter": AnimaConfig(num_blocks=2, adapter=None),
    "narrow adapter": AnimaConfig(num_blocks=1, adapter=LLMAdapterConfig(num_layers=2, model_dim=512, num_heads=8)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_expected_shapes_are_the_models_state_dict(name: str) -> None:
    with torch.device("meta"):
        model = AnimaDiT(CONFIGS[name])
    assert expected_shapes(CONFIGS[name]) == {key: list(value.shape) for key, value in model.state_dict().items()}
