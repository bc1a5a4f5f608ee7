"""The trainer end to end on the tiny model (issue 4): it learns, writes a ComfyUI-loadable file, reuses caches."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from _comfy import comfy_patch
from _tiny_run import fixed_eval_loss, one_image_dataset, read_losses, state_dict_of, tiny_model, train
from safetensors import safe_open

from library.anima.loading import load_anima_dit
from networks import lora_anima


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def test_forty_steps_on_one_image_halve_the_loss(tiny: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    dataset = one_image_dataset(tiny, tmp_path)
    out = train(tiny, tmp_path / "out", "--max_train_steps", "40", "--learning_rate", "1e-2", "--network_dim", "8",
                "--network_alpha", "8", dataset=dataset)
    progress = capsys.readouterr().err
    assert "40/40" in progress and "loss=" in progress and ("it/s" in progress or "s/it" in progress)
    lora = out / "anima_tiny_lora.safetensors"
    image = sorted((tmp_path / "one_image").glob("*.png"))[0]
    caption = image.with_suffix(".txt").read_text(encoding="utf-8").strip()
    before = fixed_eval_loss(tiny, image, caption, None)
    after = fixed_eval_loss(tiny, image, caption, lora)
    assert after < 0.5 * before, f"loss {before:.4f} -> {after:.4f}: not halved"
    losses = [loss for _, loss in read_losses(out)]
    assert len(losses) == 40 and len(set(losses)) > 30  # a real per-step signal, not a constant


def test_saved_file_is_comfyui_form_and_reproduces_the_trained_forward(tiny: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "out", "--max_train_steps", "6", "--learning_rate", "1e-2")
    path = out / "anima_tiny_lora.safetensors"
    file_sd = state_dict_of(path)
    assert file_sd and all(key.startswith("diffusion_model.") for key in file_sd)
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_module"] == "networks.lora_anima" and meta["ss_timestep_sampling"] == "sigmoid"
    assert meta["modelspec.architecture"] == "anima-preview/lora"

    base = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    targets = {name for name, module in base.named_modules() if isinstance(module, torch.nn.Linear)
               and (".self_attn." in name or ".cross_attn." in name or ".mlp." in name)}
    saved = {key[len("diffusion_model."):].rsplit(".lora_down.weight", 1)[0] for key in file_sd
             if key.endswith(".lora_down.weight")}
    assert targets == saved

    merged = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    merged.load_state_dict(comfy_patch(merged.state_dict(), file_sd))
    trained = load_anima_dit(tiny / "models" / "anima_tiny.safetensors")
    network, _ = lora_anima.create_network_from_weights(1.0, str(path), None, [], trained)
    network.apply_to([], trained, False, True)
    network.load_weights(str(path))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 1, 8, 6, generator=generator)
    ids = torch.randint(0, 32000, (2, 7), generator=generator)
    hidden = torch.randn(2, 5, trained.llm_adapter.config.source_dim, generator=generator)
    sigmas = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        got = trained(x, sigmas, trained.llm_adapter(hidden, ids))
        want = merged(x, sigmas, merged.llm_adapter(hidden, ids))
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())


def test_caches_are_written_once_and_reused(tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    args = ("--max_train_steps", "2", "--cache_latents_to_disk", "--cache_text_encoder_outputs_to_disk")
    dataset = one_image_dataset(tiny, tmp_path)
    with caplog.at_level(logging.INFO):
        train(tiny, tmp_path / "a", *args, dataset=dataset)
    first = caplog.text
    caches = sorted(p.name for p in (tmp_path / "one_image").iterdir() if p.suffix == ".safetensors")
    assert any("anima" in name for name in caches) and len(caches) >= 2, caches
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "one_image").iterdir() if p.suffix == ".safetensors"}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tiny, tmp_path / "b", *args, dataset=dataset)
    assert "latents to encode: 1 of 1" in first
    assert "latents to encode: 0 of 1" in caplog.text and "captions to encode: 0 of" in caplog.text
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_save_model_as_pt_writes_a_file_network_weights_reads(tiny: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "pt", "--max_train_steps", "2", "--save_model_as", "pt", "--save_every_n_steps", "1")
    assert {p.name for p in out.glob("anima_tiny_lora*.pt")} == {
        "anima_tiny_lora.pt", "anima_tiny_lora-step00000001.pt", "anima_tiny_lora-step00000002.pt"}
    assert not list(out.glob("*.safetensors"))
    train(tiny, tmp_path / "warm", "--max_train_steps", "1", "--network_weights", str(out / "anima_tiny_lora.pt"))
    assert (tmp_path / "warm" / "anima_tiny_lora.safetensors").is_file()


def test_debug_dataset_shows_batches_and_writes_nothing(tiny: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny, tmp_path / "dbg", "--debug_dataset")
    out = capsys.readouterr().out
    assert "bucket 0: resolution" in out and "caption: 'a " in out
    assert not (tmp_path / "dbg").exists() or not any((tmp_path / "dbg").iterdir())


def test_save_n_epoch_ratio_sets_the_epoch_interval(tiny: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "ratio", "--max_train_epochs", "4", "--save_n_epoch_ratio", "2")
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["anima_tiny_lora-000002.safetensors",
                                                                 "anima_tiny_lora.safetensors"]
