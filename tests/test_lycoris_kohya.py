"""`--network_module lycoris.kohya` trains and saves with each LyCORIS algorithm our users run (issue 18 point 4).

One 2-step run per algorithm on the tiny model. The saved file must be in the `diffusion_model.*` form, and the DiT
patched by ComfyUI's formula (tests/_comfy.py) must compute what LyCORIS's own network computes when LyCORIS reads
the same tensors under its own `lora_unet_` names (renamed here, independently of networks/lycoris_kohya.py) into
the network it builds from the same arguments, as its `load_weights` does.
Our --network_weights reads the file back into a fresh LyCORIS network.

Breaks these catch (each run once, each failed): `prepare_optimizer_params` called with our extra group lrs again
(the TypeError of the issue); `comfy_form` keeping LyCORIS's underscore names (not the diffusion_model. form);
`lycoris_kwargs` leaving `wd_on_output` at LyCORIS's output-axis default (the DoRA case differs from ComfyUI); the
DiT's forward reading its dtype from `x_embedder.proj.1.weight` again, which algo=full moves away (the full case);
`load_weights` without its fit check (a LoKr file "loads" into a LoHa network, changing nothing); `lycoris_form`
without the standalone `lycoris_` names (`test_every_lycoris_naming_reads_as_lycoris_kohya_names`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _comfy import comfy_patch
from _fake_anima import make_model
from _tiny_run import one_image_dataset, tiny_model, train
from lycoris.kohya import create_network
from safetensors import safe_open
from safetensors.torch import load_file

from library.anima.loading import load_anima_dit
from library.errors import ConfigError
from networks import lycoris_kohya

ALGOS = {  # name: (network_args, a suffix every file of it holds)
    "lokr": (["algo=lokr", "factor=4"], "lokr_w2_a"),
    "loha": (["algo=loha"], "hada_w2_b"),
    "locon": (["algo=locon"], "lora_down.weight"),
    "full": (["algo=full"], "diff"),
    "lokr_dora": (["algo=lokr", "factor=4", "dora_wd=True"], "dora_scale"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def lycoris_names(file_sd: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """kohya/LyCORIS names for `diffusion_model.<path>.<suffix>` keys: the longest module path, dots to underscores."""
    paths = sorted((path for path, _m in model.named_modules() if path), key=len, reverse=True)
    out = {}
    for key, tensor in file_sd.items():
        rest = key.removeprefix("diffusion_model.")
        path = next(p for p in paths if rest.startswith(p + "."))
        out["lora_unet_" + path.replace(".", "_") + rest[len(path):]] = tensor
    return out


def run(model: torch.nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 1, 8, 6, generator=generator)
    ids = torch.randint(0, 32000, (2, 7), generator=generator)
    hidden = torch.randn(2, 5, model.llm_adapter.config.source_dim, generator=generator)
    with torch.no_grad():
        return model(x, torch.tensor([0.3, 0.8]), model.llm_adapter(hidden, ids))


@pytest.mark.parametrize("name", ALGOS)
def test_trains_saves_comfyui_form_and_matches_lycoris(tiny: Path, tmp_path: Path, name: str) -> None:
    network_args, suffix = ALGOS[name]
    out = train(tiny, tmp_path / "out", "--network_module", "lycoris.kohya", "--network_args", *network_args,
                "--max_train_steps", "2", "--learning_rate", "5e-2", "--network_dim", "4", "--network_alpha", "2",
                "--llm_adapter_lr", "1e-3", dataset=one_image_dataset(tiny, tmp_path))
    path = out / "anima_tiny_lora.safetensors"
    file_sd = load_file(path)
    assert file_sd and all(key.startswith("diffusion_model.") for key in file_sd)
    assert any(key.endswith("." + suffix) for key in file_sd)
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata()["ss_network_module"] == "lycoris.kohya"

    dit = tiny / "models" / "anima_tiny.safetensors"
    base = load_anima_dit(dit)
    comfy = load_anima_dit(dit)
    comfy.load_state_dict(comfy_patch(comfy.state_dict(), file_sd))
    theirs = load_anima_dit(dit)
    lycoris_args = dict(a.split("=") for a in network_args) | ({"wd_on_output": "False"} if "dora" in name else {})
    network = create_network(1.0, 4, 2.0, None, None, theirs, **lycoris_args)
    network.apply_to(None, theirs, False, True)
    missing, unexpected = network.load_state_dict(lycoris_names(file_sd, theirs), strict=False)  # its load_weights
    assert (missing, unexpected) == ([], [])
    network.eval()
    want = run(theirs)
    torch.testing.assert_close(run(comfy), want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(run(base), want, atol=1e-4)  # the two steps trained something

    ours = load_anima_dit(dit)
    again = lycoris_kohya.create_network(1.0, 4, 2.0, None, [], ours, **dict(a.split("=") for a in network_args))
    again.apply_to(None, ours, False, True)
    info = again.load_weights(str(path))
    again.eval()
    assert info["unmatched_keys"] == [] and info["loaded"] == len(file_sd) and info["not_in_file"] == 0
    torch.testing.assert_close(run(ours), want, rtol=1e-4, atol=1e-5)


def test_a_file_of_another_algo_is_refused_not_silently_skipped(tmp_path: Path) -> None:
    first = make_model()
    lokr = lycoris_kohya.create_network(1.0, 4, 2.0, None, [], first, algo="lokr")
    lokr.apply_to(None, first, False, True)
    lokr.save_weights(tmp_path / "lokr.safetensors", None, {})
    model = make_model()
    loha = lycoris_kohya.create_network(1.0, 4, 2.0, None, [], model, algo="loha")
    loha.apply_to(None, model, False, True)
    with pytest.raises(ConfigError, match="does not fit this network"):
        loha.load_weights(tmp_path / "lokr.safetensors")


def test_every_lycoris_naming_reads_as_lycoris_kohya_names() -> None:
    names = lycoris_kohya.module_names(make_model())
    one = torch.ones(1)
    read = lycoris_kohya.lycoris_form({"lycoris_blocks_0_self_attn_q_proj.lokr_w1": one,
                                       "diffusion_model.blocks.0.mlp.layer1.lora_down.weight": one,
                                       "lora_unet_final_layer_linear.alpha": one}, names, "f")
    assert set(read) == {"lora_unet_blocks_0_self_attn_q_proj.lokr_w1", "lora_unet_blocks_0_mlp_layer1.lora_down.weight",
                         "lora_unet_final_layer_linear.alpha"}
    with pytest.raises(ConfigError, match="no key matches"):
        lycoris_kohya.lycoris_form({"transformer.nowhere.lora_A.weight": one}, names, "f")


def test_start_up_refusals() -> None:
    with pytest.raises(ConfigError, match="algo=ia3.*lokr"):
        lycoris_kohya.check_network_args({"algo": "ia3"})
    with pytest.raises(ConfigError, match="train_norm.*networks.lora_anima"):
        lycoris_kohya.check_network_args({"algo": "lokr", "train_norm": "true"})
    with pytest.raises(ConfigError, match="decompose_both"):
        lycoris_kohya.check_network_args({"algo": "lokr", "decompose_both": "maybe"})
    assert lycoris_kohya.lycoris_kwargs({"decompose_both": "False", "dora_wd": "true"}) == {
        "decompose_both": False, "dora_wd": True, "wd_on_output": False}
