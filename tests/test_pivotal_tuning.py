"""Pivotal tuning (issue 22) on the tiny model: a trigger's T5 rows train with the LoRA, freeze after N steps, are saved
as a rank-k LoRA on llm_adapter.embed.weight that ComfyUI's formula turns into exactly the training-time
conditioning, read back by --network_weights, and kept by the LoRA tools."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from _comfy import comfy_patch
from _tiny_run import REPO, forbid_model_loads, images_dataset, state_dict_of, tiny_model, train
from safetensors import safe_open

from library.anima.conditioning import build_context, collate_text
from library.anima.detect import identify
from library.anima.loading import load_anima_dit
from library.anima.pivotal import check_file_rows, trigger_file
from library.anima.pivotal_checks import TriggerPlan
from library.anima.text import AnimaTextEncoder
from library.anima.tokenizers import load_t5_tokenizer
from library.errors import ConfigError
from networks import lora_anima
from networks._embedding_rows import EmbeddingRowsModule

sys.path.insert(0, str(REPO / "tools"))
import convert_anima_lora as convert  # noqa: E402
import merge_anima_lora as merge  # noqa: E402
import resize_anima_lora as resize  # noqa: E402

TRIGGER, INIT = "orvantis", "circle"
IDS = [42, 6451, 159]  # '▁or', 'vant', 'is' in the bundled T5 tokenizer
EMBED = "diffusion_model.llm_adapter.embed"
PLAIN = "a red circle on a blue background"  # none of the trigger's pieces


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def trigger_dataset(tiny: Path, work: Path) -> Path:
    dataset = images_dataset(tiny, work, 4, "trigger")
    for caption in (work / "trigger").glob("*.txt"):
        caption.write_text(f"{TRIGGER}, " + caption.read_text(encoding="utf-8"), encoding="utf-8")
    return dataset


@pytest.fixture(scope="module")
def run(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 steps, a file per step; the rows train for the first 2 steps only."""
    work = tmp_path_factory.mktemp("pivotal")
    return train(tiny, work / "out", "--max_train_steps", "4", "--learning_rate", "1e-2", "--save_every_n_steps",
                 "1", "--pivotal_trigger", TRIGGER, "--pivotal_init_text", INIT, "--pivotal_lr", "0.05",
                 "--pivotal_train_steps", "2", dataset=trigger_dataset(tiny, work))


def base_dit(tiny: Path) -> torch.nn.Module:
    return load_anima_dit(tiny / "models" / "anima_tiny.safetensors")


def rows_of(file: Path) -> torch.Tensor:
    return state_dict_of(trigger_file(file))["rows"]


def test_file_holds_the_rows_as_a_rank_k_lora_that_changes_nothing_else(tiny: Path, run: Path) -> None:
    """Breaks caught: a file alpha other than the rank (scale != 1: rows off), and an up matrix with more than the
    trigger's rows (another row of the patched table changes)."""
    file = run / "anima_tiny_lora.safetensors"
    sd = state_dict_of(file)
    assert sd[f"{EMBED}.lora_up.weight"].shape == (32128, 3) and sd[f"{EMBED}.lora_down.weight"].shape == (3, 32)
    with safe_open(str(file), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_pivotal_trigger"] == TRIGGER and meta["ss_pivotal_token_ids"] == str(IDS)
    base = base_dit(tiny).state_dict()
    patched = comfy_patch(base, sd)["llm_adapter.embed.weight"]  # W + alpha / rank · up @ down; every key loads
    standalone = state_dict_of(trigger_file(file))
    assert standalone["token_ids"].tolist() == IDS
    assert identify(trigger_file(file)).summary.startswith("the standalone copy of a trained trigger's rows")
    torch.testing.assert_close(patched[IDS], standalone["rows"], rtol=0, atol=1e-6)
    others = torch.ones(32128, dtype=torch.bool)
    others[IDS] = False
    assert torch.equal(patched[others], base["llm_adapter.embed.weight"][others])
    assert not torch.allclose(patched[IDS], base["llm_adapter.embed.weight"][IDS], atol=1e-3)  # the rows trained


def test_rows_train_for_the_first_n_steps_then_freeze_while_the_lora_trains_on(run: Path) -> None:
    """Break caught: rows that never freeze (`trains_now` always True)."""
    steps = [run / f"anima_tiny_lora-step{step:08d}.safetensors" for step in (1, 2, 3)]
    final = run / "anima_tiny_lora.safetensors"
    assert not torch.allclose(rows_of(steps[0]), rows_of(steps[1]), atol=1e-6)
    assert torch.equal(rows_of(steps[1]), rows_of(steps[2])) and torch.equal(rows_of(steps[1]), rows_of(final))
    up = "diffusion_model.blocks.0.self_attn.q_proj.lora_up.weight"
    assert not torch.equal(state_dict_of(steps[1])[up], state_dict_of(final)[up])


def conditioning(dit: torch.nn.Module, tiny: Path, captions: list[str]) -> torch.Tensor:
    encoder = AnimaTextEncoder.load(tiny / "models" / "qwen3_tiny.safetensors",
                                    t5_tokenizer=load_t5_tokenizer(tiny / "models" / "t5_tokenizer"))
    with torch.no_grad():
        return build_context(dit.llm_adapter, collate_text(encoder.encode(captions)))


def training_time_dit(tiny: Path, file: Path, with_rows: bool = True) -> torch.nn.Module:
    """The DiT as the run trains it: the LoRA modules patched in, plus the trigger-rows module, loaded from `file`."""
    dit = base_dit(tiny)
    network, _ = lora_anima.create_network_from_weights(1.0, str(file), None, [], dit)
    network.apply_to([], dit, False, True)
    if with_rows:
        network.add_adapter(EmbeddingRowsModule(dit.llm_adapter.embed, IDS, torch.zeros(3, 32)))
    network.load_weights(str(file))
    return dit


def test_conditioning_from_base_plus_file_by_comfyui_formula_equals_training_time(tiny: Path, run: Path) -> None:
    """Break caught: the training forward adding the delta at another scale than the file holds
    (`hits @ delta * 0.5`)."""
    file = run / "anima_tiny_lora.safetensors"
    sd = state_dict_of(file)
    captions = [f"{TRIGGER}, {PLAIN}", PLAIN]
    comfy = base_dit(tiny)
    comfy.load_state_dict(comfy_patch(comfy.state_dict(), sd))
    without_rows = base_dit(tiny)
    without_rows.load_state_dict(comfy_patch(without_rows.state_dict(), {k: v for k, v in sd.items() if "embed" not in k}))
    expected = conditioning(training_time_dit(tiny, file), tiny, captions)
    got, plain = conditioning(comfy, tiny, captions), conditioning(without_rows, tiny, captions)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert torch.equal(got[1], plain[1])  # no trigger piece: the rows change nothing
    assert not torch.allclose(got[0], plain[0], atol=1e-3)  # with the trigger they do
    assert torch.equal(conditioning(training_time_dit(tiny, file, with_rows=False), tiny, captions)[1], expected[1])


def test_network_weights_reads_the_rows_back_and_a_wrong_trigger_is_refused(tiny: Path, run: Path,
                                                                           tmp_path: Path) -> None:
    """Break caught: a load that ignores the file's rows (the run starts again from the init text's mean)."""
    file = run / "anima_tiny_lora.safetensors"
    again = train(tiny, tmp_path / "again", "--max_train_steps", "1", "--network_weights", str(file),
                  "--pivotal_trigger", TRIGGER, "--pivotal_init_text", INIT, "--pivotal_lr", "1e-30",
                  dataset=trigger_dataset(tiny, tmp_path))
    torch.testing.assert_close(rows_of(again / "anima_tiny_lora.safetensors"), rows_of(file), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="trigger rows are for 'orvantis'"):
        check_file_rows(Namespace(network_weights=str(file)), TriggerPlan("other", [5, 6, 7], ["a", "b", "c"]))


def test_convert_resize_and_merge_keep_the_rows(tiny: Path, run: Path, tmp_path: Path) -> None:
    """Break caught: resize treating the rows as a LoRA to truncate (rank 1 keeps one of the three rows)."""
    file = run / "anima_tiny_lora.safetensors"
    model = str(tiny / "models" / "anima_tiny.safetensors")
    rows = {k: v for k, v in state_dict_of(file).items() if k.startswith(EMBED)}
    resize.resize_file(file, tmp_path / "r1.safetensors", 1, model_file=model)
    convert.convert_file(file, tmp_path / "c.safetensors", model_file=model)
    for out in ("r1", "c"):
        written = state_dict_of(tmp_path / f"{out}.safetensors")
        assert all(torch.equal(written[k], v) for k, v in rows.items()), out
    merge.merge_file(model, [str(file)], None, tmp_path / "merged.safetensors")
    merged = load_anima_dit(tmp_path / "merged.safetensors").llm_adapter.embed.weight
    torch.testing.assert_close(merged[IDS], rows_of(file), rtol=0, atol=1e-6)


def test_a_trigger_missing_from_the_captions_fails_before_any_model_loads(
        tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Break caught: the caption check moved after the model load (or dropped)."""
    forbid_model_loads(monkeypatch)
    with pytest.raises(SystemExit) as stopped:
        train(tiny, tmp_path / "out", "--pivotal_trigger", "velmoraz",
              dataset=images_dataset(tiny, tmp_path, 4, "plain"))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "'velmoraz' occurs in none of the 4 captions" in err, err


def test_resume_continues_the_rows_and_freezes_them_at_the_same_step(tiny: Path, tmp_path: Path) -> None:
    """Break caught: the rows' micro-batch count kept out of the state (a non-persistent buffer): the resumed run
    counts from 0 and trains the rows at step 4, which the uninterrupted run froze."""
    dataset = trigger_dataset(tiny, tmp_path)
    common = ("--max_train_steps", "4", "--learning_rate", "1e-2", "--pivotal_trigger", TRIGGER,
              "--pivotal_lr", "0.05", "--pivotal_train_steps", "3")
    whole = train(tiny, tmp_path / "whole", *common, "--save_every_n_steps", "2", "--save_state", dataset=dataset)
    resumed = train(tiny, tmp_path / "resumed", *common, "--resume",
                    str(whole / "anima_tiny_lora-step00000002-state"), dataset=dataset)
    final = "anima_tiny_lora.safetensors"
    assert torch.equal(rows_of(resumed / final), rows_of(whole / final))
