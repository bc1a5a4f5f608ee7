"""The Qwen3 text-encoder LoRA, as kohya's `lora_anima` trains it (issue 18 point 3): 7 Linears per Qwen3 layer,
`lora_te_<path>` keys in the same file, its own lr (--text_encoder_lr), trained unless text outputs are cached or
--network_train_unet_only is given, refused where it cannot train (cached outputs).

Breaks these tests catch (each was made once and failed them):
- networks/_targets.py `TEXT_ENCODER_BLOCKS` without "Qwen3MLP": 8 modules instead of 14, the parity fails;
- networks/_keys.py `file_key` writing text-encoder paths as `diffusion_model.lora_te...`: the key names fail;
- networks/_base.py `prepare_optimizer_params` giving the text encoder `base_lr` (unet_lr): the lr test fails;
- library/text_encoder_lora.py `encode_step_text` without `set_grad_enabled` (text under no_grad): the trained file's
  text-encoder `lora_up` stays zero;
- library/text_encoder_lora.py `trains_text_encoder` ignoring --network_train_unet_only: that run saves te keys;
- library/text_encoder_lora.py `check_trained_parts` without the cache check: --network_train_text_encoder_only with
  cached outputs trains (and the run is not refused);
- library/state.py `_with_trained_parts` returning the identity as read: an old DiT-only state resumes into a run
  with a Qwen3 LoRA;
- library/text_encoder_lora.py `checkpoint_text_encoders` without `encoder.train()`: Qwen3 is not recomputed;
- library/run_summary.py `comfy_loader` always naming LoraLoaderModelOnly: the summary's hint fails;
- networks/_plan.py without `check_text_encoder_part`: a warm start with a text-encoder part on cached outputs runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import toml
import torch
from _fake_anima import make_model
from _tiny_run import read_losses, state_dict_of, tiny_model, train, validate
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3Model

from library.errors import ConfigError
from networks import lora_anima

NAME = "anima_tiny_lora"
KOHYA_MODULES = [f"lora_te_layers_{layer}_{name}" for layer in range(2) for name in (
    "self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj", "self_attn_o_proj",
    "mlp_gate_proj", "mlp_up_proj", "mlp_down_proj")]


def small_qwen3(seed: int = 0) -> Qwen3Model:
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
    return Qwen3Model(config).eval().requires_grad_(False)


def hidden(qwen: Qwen3Model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return qwen(input_ids=ids, use_cache=False).last_hidden_state


def test_qwen3_forward_with_the_lora_is_the_base_plus_the_written_out_delta() -> None:
    qwen, dit = small_qwen3(), make_model()
    reference = copy.deepcopy(qwen)
    network = lora_anima.create_network(1.0, 4, 2.0, None, [qwen], dit)
    torch.manual_seed(1)
    for parameter in network.parameters():  # lora_up starts at zero: give every factor a value
        parameter.data.normal_(0, 0.2)
    network.apply_to([qwen], dit, True, True)
    file_sd = network.file_state_dict()
    assert sorted({key.split(".")[0] for key in file_sd if key.startswith("lora_te")}) == sorted(KOHYA_MODULES)
    # ComfyUI's key map for Anima's Qwen3, written out: weight `layers.L.<m>.weight` <- `lora_te_layers_L_<m _>`, and
    # W += alpha / rank * up @ down
    applied = 0
    for path, module in reference.named_modules():
        name = "lora_te_" + path.replace(".", "_")
        if f"{name}.lora_down.weight" in file_sd:
            down, up = file_sd[f"{name}.lora_down.weight"], file_sd[f"{name}.lora_up.weight"]
            module.weight.data += float(file_sd[f"{name}.alpha"]) / down.shape[0] * up @ down
            applied += 1
    assert applied == len(KOHYA_MODULES)
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(2))
    with_lora, expected = hidden(qwen, ids), hidden(reference, ids)
    assert not torch.allclose(with_lora, hidden(small_qwen3(), ids), atol=1e-3)  # the LoRA changes the output
    torch.testing.assert_close(with_lora, expected, rtol=1e-5, atol=1e-5)


def test_the_text_encoder_gets_text_encoder_lr_else_learning_rate() -> None:
    network = lora_anima.create_network(1.0, 4, 4.0, None, [small_qwen3()], make_model())
    network.apply_to([], None, True, True)
    groups, names = network.prepare_optimizer_params([2e-5], 3e-4, 1e-3)
    lrs = dict(zip(names, (group["lr"] for group in groups), strict=True))
    assert lrs["textencoder 1"] == 2e-5 and lrs["unet"] == 3e-4
    groups, names = network.prepare_optimizer_params(None, 3e-4, 1e-3)
    assert dict(zip(names, (group["lr"] for group in groups), strict=True))["textencoder 1"] == 1e-3  # kohya
    assert len(groups[names.index("textencoder 1")]["params"]) == 2 * len(KOHYA_MODULES)


def test_gradient_checkpointing_recomputes_qwen3_and_keeps_the_lora_gradients() -> None:
    from library.text_encoder_lora import checkpoint_text_encoders

    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(3))
    grads, calls = [], []
    for checkpointing in (False, True):
        qwen, dit = small_qwen3(), make_model()
        torch.manual_seed(4)
        network = lora_anima.create_network(1.0, 4, 2.0, None, [qwen], dit)
        for parameter in network.parameters():
            parameter.data.normal_(0, 0.2)
        network.apply_to([qwen], dit, True, False)
        if checkpointing:
            checkpoint_text_encoders([qwen])
        count, mlp = [0], qwen.layers[0].mlp
        forward = mlp.forward  # counted by a wrapper: torch runs no forward hooks when it recomputes

        def counted(*args: object, forward=forward, count=count) -> torch.Tensor:
            count[0] += 1
            return forward(*args)

        mlp.forward = counted
        qwen(input_ids=ids, use_cache=False).last_hidden_state.square().sum().backward()
        grads.append([p.grad.clone() for p in network.parameters()])
        calls.append(count[0])
    assert calls == [1, 2]  # the checkpointed layer ran again in the backward pass
    assert all(g.abs().max() > 0 for g in grads[1][1::3])  # every lora_up gets a gradient (alpha, down, up order)
    for plain, checkpointed in zip(*grads, strict=True):
        torch.testing.assert_close(checkpointed, plain, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def uncached(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose train_args.toml is the tiny model's with text outputs not cached: kohya's rule then trains a
    Qwen3 LoRA too (the tiny model's own train args cache them, and a TOML flag has no --no- form)."""
    folder = tmp_path_factory.mktemp("uncached")
    config = toml.loads((tiny / "train_args.toml").read_text(encoding="utf-8"))
    config["cache_text_encoder_outputs"] = False
    (folder / "train_args.toml").write_text(toml.dumps(config), encoding="utf-8")
    return folder


def test_uncached_text_trains_lora_te_keys_that_resume_exactly_and_load_back(
        tiny: Path, uncached: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ("--max_train_steps", "4", "--save_every_n_steps", "2", "--save_state", "--text_encoder_lr", "5e-3")
    full = train(uncached, tmp_path / "full", *extra)
    assert "load it with a LoraLoader node, model and CLIP" in capsys.readouterr().out  # the summary's ComfyUI hint
    file_sd = state_dict_of(full / f"{NAME}.safetensors")
    te_keys = [key for key in file_sd if key.startswith("lora_te_")]
    assert sorted({key.split(".")[0] for key in te_keys}) == sorted(KOHYA_MODULES) and len(te_keys) == 42
    assert any(key.startswith("diffusion_model.") for key in file_sd)  # the DiT's part, in the same file
    assert all(file_sd[k].abs().max() > 0 for k in te_keys if k.endswith("lora_up.weight")), "Qwen3 LoRA untrained"

    resumed = train(uncached, tmp_path / "resumed", *extra,
                             "--resume", str(full / f"{NAME}-step00000002-state"))
    assert read_losses(resumed) == read_losses(full)[2:]
    again = state_dict_of(resumed / f"{NAME}.safetensors")
    assert again.keys() == file_sd.keys() and all(torch.equal(again[k], file_sd[k]) for k in file_sd)

    from library.anima.loading import load_anima_dit  # what --network_weights does with the file: the same load
    from library.anima.qwen3 import load_qwen3

    qwen = load_qwen3(tiny / "models" / "qwen3_tiny.safetensors")
    dit = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    network = lora_anima.create_network(1.0, 4, 4.0, None, [qwen], dit)
    network.apply_to([qwen], dit, True, True)
    info = network.load_weights(full / f"{NAME}.safetensors")
    assert not info["unmatched_keys"] and not info["not_in_file"]
    reloaded = network.file_state_dict()
    assert all(torch.equal(reloaded[k].float(), file_sd[k].float()) for k in te_keys)


def test_a_state_from_before_text_encoder_loras_is_refused_with_one(uncached: Path, tmp_path: Path) -> None:
    """Such a state trained the DiT only (its model.safetensors lacks the lora_te_ tensors); resumed by a run that
    would now train Qwen3 too, it must be refused at start, not fail inside accelerate's strict load."""
    out = train(uncached, tmp_path / "first", "--max_train_steps", "1", "--save_state", "--network_train_unet_only")
    state = out / f"{NAME}-state"
    info = json.loads((state / "train_state.json").read_text(encoding="utf-8"))
    assert info["identity"].pop("trained_parts") == "DiT"
    (state / "train_state.json").write_text(json.dumps(info), encoding="utf-8")
    validate(uncached, tmp_path / "out", "--resume", str(state), "--network_train_unet_only")
    with pytest.raises(ConfigError, match="trained_parts: state has 'DiT', this run has 'DiT \\+ Qwen3 text encoder'"):
        validate(uncached, tmp_path / "out", "--resume", str(state))


@pytest.mark.parametrize("option,prefixes", [("--network_train_unet_only", {"diffusion_model."}),
                                             ("--network_train_text_encoder_only", {"lora_te_"})])
def test_one_part_only(uncached: Path, tmp_path: Path, option: str, prefixes: set[str]) -> None:
    out = train(uncached, tmp_path / "out", "--max_train_steps", "1", option)
    keys = state_dict_of(out / f"{NAME}.safetensors")
    assert {prefix for prefix in ("diffusion_model.", "lora_te_") if any(k.startswith(prefix) for k in keys)} \
        == prefixes


@pytest.mark.parametrize("extra,message", [
    (("--network_train_unet_only", "--network_train_text_encoder_only"), "together train nothing"),
    (("--network_train_text_encoder_only",), "cannot be trained from cached text-encoder outputs"),
])
def test_parts_that_cannot_train_are_refused_at_start(tiny: Path, tmp_path: Path, extra: tuple[str, ...],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):  # the tiny train_args.toml caches text outputs
        validate(tiny, tmp_path / "out", *extra)


def test_a_warm_start_with_a_text_encoder_part_on_cached_text_is_refused(tiny: Path, uncached: Path,
                                                                           tmp_path: Path) -> None:
    file = tmp_path / "te.safetensors"
    save_file({f"{KOHYA_MODULES[0]}.lora_down.weight": torch.zeros(4, 8)}, str(file))
    with pytest.raises(ConfigError, match="cannot be trained with cached text-encoder outputs"):
        validate(tiny, tmp_path / "out", "--network_weights", str(file))
    with pytest.raises(ConfigError, match="holds only a text-encoder LoRA"):
        validate(tiny, tmp_path / "out", "--network_weights", str(file), "--network_train_unet_only")
    validate(uncached, tmp_path / "out", "--network_weights", str(file))  # uncached: it trains on
