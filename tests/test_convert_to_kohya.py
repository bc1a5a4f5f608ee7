"""tools/convert_anima_lora.py --to kohya (issue 18 point 5): every key is one kohya's Anima loader maps, with kohya's
math giving ComfyUI's ΔW; what kohya cannot hold (norm deltas, Linears outside its blocks) is left out and counted;
our --network_weights reads both forms.

kohya's loader is rewritten here from adapter-files.md §5.1 (`networks/lora_anima.py` `create_network_from_weights`
and `LoRANetwork.create_modules`), independently of tools/_kohya_form.py.

Breaks these catch (each run once, each failed): `kohya_paths` taking every Linear of the DiT (llm_adapter.out_proj
is written, and kohya would drop it: `test_kohya_loader_maps_every_key`); norm deltas kept in the kohya file (same
test); the left-out note counting the norms wrong (`test_cli_says_what_it_left_out`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from _comfy import comfy_patch
from _fake_anima import one_thread
from safetensors import safe_open
from safetensors.torch import load_file
from test_lora_tools import random_network, run, tiny_base, tiny_model

from library.anima.loading import save_anima_dit
from networks import loha_anima, lokr_anima, lora_anima

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import convert_anima_lora as convert  # noqa: E402
from _lora_math import comfy_delta  # noqa: E402
from _lora_read import read_adapter  # noqa: E402

_one_thread = pytest.fixture(autouse=True, scope="module")(one_thread)

def kohya_loader(model: torch.nn.Module, weights_sd: dict[str, torch.Tensor]) -> dict[str, torch.nn.Module]:
    """{lora_name: Linear} of the modules kohya's loader creates for `weights_sd` on `model`."""
    adapter = any("llm_adapter" in key.split(".")[0] for key in weights_sd)
    targets = ["Block", "PatchEmbed", "TimestepEmbedding", "FinalLayer"] + (["LLMAdapterTransformerBlock"] * adapter)
    dims = {key.split(".")[0] for key in weights_sd if "lora_down" in key}
    created = {}
    for name, module in model.named_modules():
        if module.__class__.__name__ in targets:
            for child_name, child in module.named_modules():
                if child.__class__.__name__ == "Linear":
                    lora_name = f"lora_unet.{(name + '.' if name else '') + child_name}".replace(".", "_")
                    if lora_name in dims:
                        created[lora_name] = child
    return created


def kohya_patch(model: torch.nn.Module, weights_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict after kohya's LoRAInfModule.merge_to of every created module: W + up @ down · alpha / dim."""
    created = kohya_loader(model, weights_sd)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path_of = {id(m): p for p, m in model.named_modules()}
    for lora_name, linear in created.items():
        down, up = weights_sd[f"{lora_name}.lora_down.weight"], weights_sd[f"{lora_name}.lora_up.weight"]
        scale = float(weights_sd[f"{lora_name}.alpha"]) / down.shape[0]
        state[path_of[id(linear)] + ".weight"] += (up.float() @ down.float()) * scale
    return state


def files(tmp_path: Path, module=lora_anima, **kwargs: str) -> tuple[Path, Path, object]:
    dit, ours = tmp_path / "dit.safetensors", tmp_path / "ours.safetensors"
    save_anima_dit(tiny_base(), dit)
    network = random_network(module, tiny_model(), 4, 2.0, seed=7, **kwargs)
    network.save_weights(ours, None, {})
    return dit, ours, network


def test_kohya_loader_maps_every_key(tmp_path: Path) -> None:
    dit, ours, network = files(tmp_path, include_patterns=r"['llm_adapter\.out_proj']")
    out = tmp_path / "kohya.safetensors"
    assert convert.main([str(ours), "--to", "kohya", "--model", str(dit), "--output", str(out)]) == 0
    kohya_sd = load_file(out)
    created = kohya_loader(tiny_model(), kohya_sd)
    expected = {f"{name}.{suffix}" for name in created for suffix in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert set(kohya_sd) == expected  # load_state_dict(strict=False): nothing unexpected, nothing missing
    linears = [a for a in network.adapters if a.kind == "lora"]
    assert len(created) == len(linears) - 1  # all but llm_adapter.out_proj
    kept = {k: v for k, v in load_file(ours).items() if ".lora_" in k or k.endswith(".alpha")}
    kept = {k: v for k, v in kept.items() if ".out_proj." not in k}
    base = tiny_base()
    want = comfy_patch(base, kept)
    got = kohya_patch(tiny_model(), kohya_sd)
    for key in base:
        torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-6, msg=key)
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_module"] == "networks.lora_anima" and "left out" in meta[convert.NOTE_KEY]


def test_cli_says_what_it_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dit, ours, network = files(tmp_path, include_patterns=r"['llm_adapter\.out_proj']")
    assert convert.main([str(ours), "--to", "kohya", "--model", str(dit), "--output", str(tmp_path / "k.safetensors")]) == 0
    said = capsys.readouterr().out
    norms = sum(a.kind == "norm" for a in network.adapters)
    assert norms > 0 and f"{norms} norm deltas (w_norm) left out" in said and "norm scales stay the base" in said
    assert "1 modules outside kohya's target blocks left out (e.g. llm_adapter.out_proj)" in said


def test_our_network_weights_read_both_forms(tmp_path: Path) -> None:
    dit, ours, network = files(tmp_path, train_norm="false")
    kohya = tmp_path / "kohya.safetensors"
    assert convert.main([str(ours), "--to", "kohya", "--model", str(dit), "--output", str(kohya)]) == 0
    want = run(tiny_model(comfy_patch(tiny_base(), load_file(ours))))
    for file in (ours, kohya):
        model = tiny_model()
        fresh = lora_anima.create_network(1.0, 4, 9.0, None, [], model, train_norm="false")
        fresh.apply_to([], model)
        info = fresh.load_weights(file)
        assert info["loaded"] == len(network.adapters) and info["unmatched_keys"] == [], file
        torch.testing.assert_close(run(model), want, rtol=1e-5, atol=1e-6, msg=str(file))
    back = tmp_path / "back.safetensors"
    assert convert.main([str(kohya), "--model", str(dit), "--output", str(back)]) == 0
    assert load_file(back).keys() == load_file(ours).keys()


@pytest.mark.parametrize(("module", "kohya_name"), [(lokr_anima, "networks.lokr"), (loha_anima, "networks.loha")])
def test_lokr_and_loha_keep_their_tensors_under_kohya_names(tmp_path: Path, module, kohya_name: str) -> None:
    dit, ours, network = files(tmp_path, module, train_norm="false", **({"factor": "4"} if module is lokr_anima else {}))
    out = tmp_path / "kohya.safetensors"
    assert convert.main([str(ours), "--to", "kohya", "--model", str(dit), "--output", str(out)]) == 0
    kohya_sd = load_file(out)
    assert all(key.startswith("lora_unet_") for key in kohya_sd)
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata()["ss_network_module"] == kohya_name
    model = tiny_model()
    loaded, _ = module.create_network_from_weights(1.0, str(out), None, [], model)
    loaded.apply_to([], model)
    torch.testing.assert_close(run(model), run(tiny_model(comfy_patch(tiny_base(), load_file(ours)))),
                               rtol=1e-5, atol=1e-6)
    deltas = {a.path: a.delta_weight() for a in network.adapters}  # what merge_anima_lora adds: ComfyUI's math
    for patch in read_adapter(kohya_sd, tiny_model(), str(out)):
        torch.testing.assert_close(comfy_delta(patch), deltas[patch.path], rtol=1e-5, atol=1e-6, msg=patch.path)
