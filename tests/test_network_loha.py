"""networks.loha_anima: shapes, stored alpha, scale and start as LyCORIS 4.1.3 makes them, ΔW and the patched
forward against LyCORIS's own module, kohya's `networks.loha` / `networks.lokr` names as aliases.

Breaks these catch (each run once, each failed): the scale as alpha / out_features instead of alpha / rank
(`test_delta_and_forward_match_lycoris_module`); `hada_w2_a` initialised like `hada_w1_a`, so a new network no
longer starts at the base model (`test_start_matches_lycoris`); the alias table without `networks.loha`
(`test_kohya_names_are_aliases`); the kind check naming only LoKr files (a LoHa file given to the LoRA network is
then "has no 'hada_w1_a'" instead of the module to use: `test_a_loha_file_names_its_module_in_the_other_networks`).
ComfyUI's formula on saved LoHa files is checked by the `loha` variants of
tests/test_network_files.py (a training scale of alpha / √rank fails there).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from _fake_anima import make_batch, make_model, one_thread
from _tiny_run import one_image_dataset, tiny_model, train
from lycoris.functional import loha as lycoris_loha
from lycoris.modules.loha import LohaModule
from safetensors.torch import load_file

from library.errors import ConfigError
from library.network_setup import import_network_module
from networks import loha_anima, lokr_anima, lora_anima
from networks._loha_module import LoHaModule

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

CASES = [(32, 16, 4, 2.0), (64, 24, 1, 1.0), (24, 64, 8, 16.0), (16, 16, 3, None)]  # (out, in, rank, alpha)


@pytest.mark.parametrize(("out", "inp", "rank", "alpha"), CASES)
def test_shapes_alpha_and_scale_match_lycoris_module(out, inp, rank, alpha):
    linear = nn.Linear(inp, out, bias=False)
    theirs = LohaModule("x", linear, lora_dim=rank, alpha=alpha)
    ours = LoHaModule("x", linear, rank, alpha)
    their_sd = {k: v for k, v in theirs.state_dict().items() if k.startswith(("hada_", "alpha"))}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in their_sd.items()}
    assert float(ours.alpha) == pytest.approx(float(their_sd["alpha"]))
    assert ours.scale == pytest.approx(theirs.scale)


def test_start_matches_lycoris():
    """Same distributions as LyCORIS: w2_a zero (ΔW = 0), the others normal with LyCORIS's deviations."""
    linear = nn.Linear(256, 512, bias=False)
    torch.manual_seed(0)
    ours = LoHaModule("x", linear, 16, 4.0)
    torch.manual_seed(0)
    theirs = LohaModule("x", linear, lora_dim=16, alpha=4.0)
    for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
        mine, their = getattr(ours, name).detach(), getattr(theirs, name).detach()
        assert float(mine.std()) == pytest.approx(float(their.std()), rel=0.05, abs=1e-6), name
    assert ours.delta_weight().abs().max() == 0


@pytest.mark.parametrize(("out", "inp", "rank", "alpha"), CASES)
def test_delta_and_forward_match_lycoris_module(out, inp, rank, alpha):
    """Random factors copied into LyCORIS's LohaModule: ΔW, and the patched Linear's output, agree."""
    ours_linear, their_linear = nn.Linear(inp, out, bias=False), nn.Linear(inp, out, bias=False)
    their_linear.load_state_dict(ours_linear.state_dict())
    ours = LoHaModule("x", ours_linear, rank, alpha)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_()
    theirs = LohaModule("x", their_linear, lora_dim=rank, alpha=alpha)
    theirs.load_state_dict({k: v for k, v in ours.state_dict().items()}, strict=False)
    sd = ours.state_dict()
    functional = lycoris_loha.diff_weight(sd["hada_w1_b"], sd["hada_w1_a"], sd["hada_w2_b"], sd["hada_w2_a"],
                                          None, None, gamma=theirs.scale, backend="torch")
    torch.testing.assert_close(ours.delta_weight(), functional, rtol=1e-5, atol=1e-5)
    x = torch.randn(2, 3, inp)
    ours.apply_to_org()
    theirs.apply_to()
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours_linear(x), their_linear(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(ours_linear(x), ours._org_forward(x), atol=1e-3)


def test_loha_network_trains_every_module_and_refuses_other_algos():
    model = make_model(checkpointing=True)
    network = loha_anima.create_network(1.0, 2, 1.0, None, [], model, algo="loha")
    network.apply_to([], model)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    batch = make_batch()
    for _ in range(2):
        optimizer.zero_grad()
        model(*batch).square().mean().backward()
        optimizer.step()
    assert {a.kind for a in network.adapters} == {"loha", "norm"}
    for adapter in network.adapters:
        assert adapter.delta_weight().abs().sum() > 0, adapter.path
    with pytest.raises(ConfigError, match="algo=lokr.*networks.lokr_anima"):
        loha_anima.create_network(1.0, 2, 1.0, None, [], make_model(), algo="lokr")


def test_kohya_names_are_aliases():
    assert import_network_module("networks.loha") is loha_anima
    assert import_network_module("networks.lokr") is lokr_anima
    assert import_network_module("networks.loha_anima") is loha_anima


def test_a_loha_file_names_its_module_in_the_other_networks(tmp_path):
    model = make_model()
    network = loha_anima.create_network(1.0, 2, 1.0, None, [], model)
    file = tmp_path / "loha.safetensors"
    network.save_weights(file, None, {})
    other = lora_anima.create_network(1.0, 2, 1.0, None, [], make_model())
    with pytest.raises(ConfigError, match="LoHa weight.*--network_module networks.loha_anima"):
        other.load_weights(file)
    with pytest.raises(ConfigError, match="LoHa weight.*--network_module networks.loha_anima"):
        lokr_anima.create_network_from_weights(1.0, str(file), None, [], make_model())


def test_kohya_name_trains_through_the_trainer(tmp_path):
    """`--network_module networks.loha` passes the start-up checks, trains and saves our LoHa file."""
    tiny = tiny_model(tmp_path / "tiny")
    out = train(tiny, tmp_path / "out", "--network_module", "networks.loha", "--network_dim", "2",
                "--max_train_steps", "2", dataset=one_image_dataset(tiny, tmp_path))
    saved = load_file(out / "anima_tiny_lora.safetensors")
    assert any(key.endswith(".hada_w2_a") for key in saved) and all(k.startswith("diffusion_model.") for k in saved)
    assert any(saved[k].abs().sum() > 0 for k in saved if k.endswith(".hada_w2_a"))  # w2_a starts at zero
