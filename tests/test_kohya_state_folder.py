"""`--resume` on a state folder that kohya sd-scripts wrote (issue 18 point 6) is refused before any model loads,
with a message that names the folder's kind and the `--network_weights` file that carries its LoRA over, and that
file does carry it over. The folder is a genuine one: accelerate's `save_state` on a network with kohya's module
names, plus the `train_state.json` kohya's save hook adds (kohya-cli.md §5.1).

Breaks these tests catch (each was made once and failed them):
- library/state.py `read_train_state` without its `refuse_foreign_state` call: the kohya folder passes the start-up
  checks and the models start loading (then accelerate fails on the key names);
- library/foreign_state.py `state_kind` without the `lora_unet_` check: the message calls it another trainer's;
- library/foreign_state.py `lora_file` always offering model.safetensors: the seed project's empty one is offered.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from _tiny_run import forbid_model_loads, reset_accelerate, tiny_model, train, validate
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from library import state as state_lib
from library.errors import ConfigError

KOHYA_TARGETS = re.compile(r"blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|output)_proj|blocks\.\d+\.mlp\.layer[12]")


class KohyaLoRAModule(nn.Module):
    """kohya's LoRAModule layout: `lora_down` / `lora_up` Linears and an `alpha` buffer."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.lora_down = nn.Linear(linear.in_features, rank, bias=False)
        self.lora_up = nn.Linear(rank, linear.out_features, bias=False)
        self.register_buffer("alpha", torch.tensor(alpha))


class KohyaNetwork(nn.Module):
    """kohya's LoRANetwork registers each module under its `lora_name` (`lora_unet_<path with _>`)."""

    def __init__(self, dit: nn.Module, rank: int = 4, alpha: float = 4.0) -> None:
        super().__init__()
        for path, module in dit.named_modules():
            if isinstance(module, nn.Linear) and KOHYA_TARGETS.fullmatch(path):
                self.add_module("lora_unet_" + path.replace(".", "_"), KohyaLoRAModule(module, rank, alpha))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def kohya_state(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<name>-step00000001-state` as kohya's train_network.py leaves it after one step."""
    from library.anima.loading import load_anima_dit

    folder = tmp_path_factory.mktemp("kohya_out") / "mylora-step00000001-state"
    torch.manual_seed(0)
    network = KohyaNetwork(load_anima_dit(tiny / "models" / "anima_tiny.safetensors"))
    reset_accelerate()
    try:
        accelerator = Accelerator(cpu=True)
        optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        network, optimizer, scheduler = accelerator.prepare(network, optimizer, scheduler)
        accelerator.backward(sum((p.float() ** 2).sum() for p in network.parameters()))
        optimizer.step()
        scheduler.step()
        accelerator.save_state(str(folder))
    finally:
        reset_accelerate()
    (folder / "train_state.json").write_text(json.dumps({"current_epoch": 1, "current_step": 1}), encoding="utf-8")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optimizer.bin", "random_states_0.pkl",
                                                        "scheduler.bin", "train_state.json"]
    return folder


def test_a_kohya_state_is_refused_before_the_models_load_offering_its_weights(
        tiny: Path, kohya_state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_model_loads(monkeypatch)
    with pytest.raises(SystemExit) as stopped:
        train(tiny, tmp_path / "out", "--max_train_steps", "3", "--resume", str(kohya_state))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err, err
    said = err[err.index("error: "):]
    assert f"--resume {kohya_state}: this is a kohya sd-scripts state folder" in said
    assert "model.safetensors, optimizer.bin, scheduler.bin, random_states_0.pkl, train_state.json" in said
    assert f"pass --network_weights {kohya_state / 'model.safetensors'} instead of --resume" in said
    assert "at step 1" in said


def test_the_offered_file_carries_every_module_over(tiny: Path, kohya_state: Path, tmp_path: Path) -> None:
    from library.anima.loading import load_anima_dit
    from networks import lora_anima

    weights = kohya_state / "model.safetensors"
    validate(tiny, tmp_path / "out", "--network_weights", str(weights))  # the start-up check accepts it
    saved = load_file(str(weights))
    dit = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    network = lora_anima.create_network(1.0, 4, 4.0, None, [], dit, train_norm="false", train_llm_adapter="false")
    network.apply_to([], dit, False, True)
    info = network.load_weights(weights)
    assert info["loaded"] == len({key.split(".")[0] for key in saved}) and not info["unmatched_keys"]
    ours = network.file_state_dict()
    for key, tensor in saved.items():
        name, suffix = key.split(".", 1)
        path = name.removeprefix("lora_unet_")
        match = [k for k in ours if k.endswith("." + suffix) and k.removeprefix("diffusion_model.")
                 .removesuffix("." + suffix).replace(".", "_") == path]
        assert len(match) == 1 and torch.equal(ours[match[0]], tensor), key


def test_a_seed_project_state_offers_the_lora_saved_beside_it(kohya_state: Path, tmp_path: Path) -> None:
    """FHfanshu sd-scripts-anima's states hold no adapter tensors (kohya-cli.md §1, the F network design note)."""
    folder = shutil.copytree(kohya_state, tmp_path / "mylora-step00000001-state")
    save_file({}, str(folder / "model.safetensors"))
    (folder / "resume_snapshot.json").write_text('{"schema": "anima_resume_snapshot/v1", "fields": {}}', "utf-8")
    beside = tmp_path / "mylora-step00000001.safetensors"
    with pytest.raises(ConfigError, match="pass the LoRA file saved with that state"):
        state_lib.read_train_state(folder)
    shutil.copy(kohya_state / "model.safetensors", beside)
    with pytest.raises(ConfigError) as refused:
        state_lib.read_train_state(folder)
    assert "FHfanshu sd-scripts-anima" in str(refused.value)
    assert f"pass --network_weights {beside} instead of --resume" in str(refused.value)
