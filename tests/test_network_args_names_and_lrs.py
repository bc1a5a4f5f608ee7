"""--network_args: unknown names fail at start-up; kohya's network_reg_lrs and LoRA+ shape the optimizer groups."""

from __future__ import annotations

import pytest
from _fake_anima import make_model

from library.errors import ConfigError
from networks import lokr_anima, lora_anima


def test_unknown_names_fail_with_the_nearest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="train_norms: networks.lora_anima has no such argument. Did you mean "
                                          "train_norm"):
        lora_anima.check_network_args({"train_norms": "false"})
    with pytest.raises(ConfigError, match="loraplus_lr_ratio: networks.lokr_anima has no such argument"):
        lokr_anima.check_network_args({"loraplus_lr_ratio": "4"})
    with pytest.raises(ConfigError, match="algo=locon: networks.lokr_anima trains LoKr only"):
        lokr_anima.check_network_args({"algo": "locon"})
    lokr_anima.check_network_args({"algo": "lokr", "factor": "8", "lokr_rank_dropout": "0.1"})
    with pytest.raises(ConfigError, match="has no such argument"):
        lora_anima.create_network(1.0, 4, 1.0, None, [], make_model(), foo="1")


def groups_of(network, **lrs):  # type: ignore[no-untyped-def]
    groups, names = network.prepare_optimizer_params(None, None, 1e-3, **lrs)
    return {name: group for name, group in zip(names, groups, strict=True)}


def test_network_reg_lrs_move_matching_modules_into_their_own_group() -> None:
    network = lora_anima.create_network(1.0, 4, 1.0, None, [], make_model(),
                                        network_reg_lrs=r".*\.mlp\..*=5e-4,.*cross_attn\.k_proj=2e-4")
    groups = groups_of(network)
    assert groups["reg_lr_0"]["lr"] == 5e-4 and groups["reg_lr_1"]["lr"] == 2e-4 and groups["unet"]["lr"] == 1e-3
    total = sum(p.numel() for g in groups.values() for p in g["params"])
    assert total == sum(p.numel() for p in network.get_trainable_params())  # every parameter exactly once
    assert groups["norm"]["weight_decay"] == 0.0


def test_loraplus_gives_up_matrices_ratio_times_the_lr() -> None:
    network = lora_anima.create_network(1.0, 4, 1.0, None, [], make_model(), loraplus_lr_ratio="16")
    groups = groups_of(network, llm_adapter_lr=1e-4)
    assert groups["unet plus"]["lr"] == pytest.approx(16e-3) and groups["llm_adapter plus"]["lr"] == pytest.approx(16e-4)
    plus_ids = {id(p) for name, g in groups.items() if name.endswith(" plus") for p in g["params"]}
    ups = {id(m.lora_up.weight) for m in network.adapters if m.kind == "lora"}
    assert plus_ids == ups
    unet_ratio = lora_anima.create_network(1.0, 4, 1.0, None, [], make_model(), loraplus_unet_lr_ratio="4",
                                           loraplus_lr_ratio="16")
    assert groups_of(unet_ratio)["unet plus"]["lr"] == pytest.approx(4e-3)  # the unet-specific ratio wins
