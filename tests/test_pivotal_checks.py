"""Pivotal tuning's start-up checks and its rows module, without a training run: the trigger against the captions
(pieces listed, leaks counted, common pieces refused), the option rules, the init rows, and when the rows freeze."""

from __future__ import annotations

import logging
from argparse import Namespace

import pytest
import torch

from library.anima.pivotal import init_rows
from library.anima.pivotal_args import check_pivotal_values
from library.anima.pivotal_checks import COMMON_SHARE, TriggerPlan, plan_trigger
from library.anima.tokenizers import load_t5_tokenizer
from library.errors import ConfigError
from networks._embedding_rows import EmbeddingRowsModule

PLAIN = "a red circle on a blue background"  # 7 words, none with a piece of 'orvantis'


@pytest.fixture(scope="module")
def t5():
    return load_t5_tokenizer()


def test_pieces_are_listed_and_leaks_counted(t5, caplog: pytest.LogCaptureFixture) -> None:
    """Break caught: a leak count that misses words (e.g. counting distinct words instead of occurrences)."""
    captions = ["orvantis, red or blue", "orvantis, red or green"] + [PLAIN] * 6  # 'or' twice in 48 other words
    with caplog.at_level(logging.INFO):
        plan = plan_trigger("orvantis", "circle", t5, captions)
    assert plan.token_ids == [42, 6451, 159] and plan.pieces == ["▁or", "vant", "is"]
    assert plan.init_ids == t5("circle", add_special_tokens=False)["input_ids"]
    text = caplog.text
    assert "'▁or' (42), 'vant' (6451), 'is' (159)" in text and "is in 2 of 8 captions" in text
    assert "piece '▁or' of 'orvantis' also occurs in 2 other caption words (e.g. 'or')" in text


def test_common_pieces_are_refused_with_advice(t5) -> None:
    """Breaks caught: the single-character rule dropped ('sks' tokenises to letters), the special-token rule dropped
    ('<unk>' stands for every character T5 lacks), or the share rule dropped."""
    with pytest.raises(ConfigError, match=r"piece '▁' is a single character.*rarer made-up word.*'orvantis'"):
        plan_trigger("sks_aria", None, t5, ["sks_aria, 1girl, smile"])
    with pytest.raises(ConfigError, match=r"piece '<unk>' is a special token"):
        plan_trigger("miku初音", None, t5, ["miku初音, smile"])
    reds = round(1 / COMMON_SHARE) - 2  # 'or' is then 1 of 19 other words: just above the share
    captions = ["orvantis, or " + " ".join(["red"] * reds)]
    with pytest.raises(ConfigError, match=r"piece '▁or' is in 1 of the captions' \d+ other words"):
        plan_trigger("orvantis", None, t5, captions)
    plan_trigger("orvantis", None, t5, captions + [PLAIN])  # just below the share: a warning only


def test_a_trigger_only_inside_other_words_is_not_found(t5) -> None:
    with pytest.raises(ConfigError, match=r"occurs in none of the 1 captions as its own word \(1 hold it"):
        plan_trigger("orvantis", None, t5, ["xorvantisy, red"])


@pytest.mark.parametrize("extra,message", [
    ({"pivotal_lr": 1e-3}, "--pivotal_lr set without --pivotal_trigger"),
    ({"pivotal_trigger": "a, b"}, "one caption tag"),
    ({"pivotal_trigger": "orvantis", "pivotal_train_steps": 0}, "1 or more steps"),
    ({"pivotal_trigger": "orvantis", "pivotal_lr": 0.0}, "positive learning rate"),
    ({"pivotal_trigger": "orvantis", "pivotal_init_text": " "}, "--pivotal_init_text is empty"),
])
def test_option_values(extra: dict, message: str) -> None:
    args = Namespace(pivotal_trigger=None, pivotal_init_text=None, pivotal_lr=None, pivotal_train_steps=None)
    for key, value in extra.items():
        setattr(args, key, value)
    with pytest.raises(ConfigError, match=message):
        check_pivotal_values(args)


def test_rows_start_at_the_init_texts_mean_and_freeze_after_n_optimizer_steps() -> None:
    """Breaks caught: init from the first init piece only; freezing counted in micro-batches (accumulation
    ignored); a frozen table row or the table itself getting a gradient."""
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(20, 4).requires_grad_(False)
    plan = TriggerPlan("t", [3, 7], ["a", "b"], "x y", [1, 2, 5])
    start = init_rows(embedding, plan)
    assert torch.equal(start, embedding.weight[[1, 2, 5]].mean(0, keepdim=True).expand(2, -1))
    rows = EmbeddingRowsModule(embedding, plan.token_ids, start, train_steps=2, accumulation=2)
    rows.apply_to_org()
    ids = torch.tensor([[3, 0, 7, 9]])
    with torch.no_grad():
        out = embedding(ids)
    assert torch.equal(out[0, [1, 3]], embedding.weight[[0, 9]])  # other ids: the table's rows, bit for bit
    torch.testing.assert_close(out[0, [0, 2]], start, rtol=0, atol=1e-7)
    grads = []
    for _ in range(5):  # 2 steps x 2 micro-batches train, the 5th micro-batch (step 3) does not
        rows.delta.grad = None
        out = embedding(ids)
        if out.requires_grad:
            out.sum().backward()
        grads.append(rows.delta.grad is not None)
    assert grads == [True, True, True, True, False] and embedding.weight.grad is None
    assert not embedding(ids).requires_grad


def test_the_rows_are_their_own_optimizer_group_with_their_own_lr() -> None:
    """Breaks caught: the rows' lr falling back to the network's although --pivotal_lr is set, or the rows sitting in
    the LoRA's group (weight decay would pull the rows' change toward zero)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from make_tiny_anima import tiny

    from library.anima.model import AnimaDiT
    from networks import lora_anima

    dit = AnimaDiT(tiny().dit)
    network = lora_anima.create_network(1.0, 4, 4.0, None, [], dit)
    network.apply_to([], dit, False, True)
    rows = EmbeddingRowsModule(dit.llm_adapter.embed, [42, 159], torch.zeros(2, 32), lr=5e-2)
    network.add_adapter(rows)
    groups, names = network.prepare_optimizer_params(None, 1e-3, 1e-3)
    pivotal = groups[names.index("pivotal")]
    assert pivotal["lr"] == 5e-2 and pivotal["weight_decay"] == 0.0 and pivotal["params"] == [rows.delta]
    others = [p for name, g in zip(names, groups, strict=True) if name != "pivotal" for p in g["params"]]
    assert all(p is not rows.delta for p in others) and len(others) + 1 == len(list(network.parameters()))
