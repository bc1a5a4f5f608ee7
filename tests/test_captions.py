"""Caption processing (dataset-config.md §5) and structured JSON captions; all randomness is seeded."""

from __future__ import annotations

import json
import random

import pytest

from library.dataset.captions import CaptionOptions, item_rng, process_caption, static_caption
from library.dataset.json_captions import StructuredCaption, load_json_caption, parse_structured
from library.errors import ConfigError

TAGS = "a, b, c, d, e, f, g, h"


def run(raw, epoch: int = 1, seed: int = 0, index: int = 0, position: int = 0, **options) -> str:
    return process_caption(raw, CaptionOptions(**options), epoch, item_rng(seed, epoch, f"0:{index}:{position}", "caption"))


def test_plain_caption_is_unchanged():
    assert run(TAGS) == TAGS


def test_prefix_and_suffix_joined_with_a_space():
    assert run("a, b", prefix="sks,", suffix="end") == "sks, a, b end"


def test_only_first_line_without_wildcards():
    assert run("first line\nsecond line") == "first line"


def test_dropout_rate_one_drops_everything_including_prefix():
    assert run("a, b", prefix="sks", dropout_rate=1.0) == ""


def test_dropout_every_n_epochs():
    assert run("a, b", epoch=2, dropout_every_n_epochs=2) == ""
    assert run("a, b", epoch=3, dropout_every_n_epochs=2) == "a, b"


def test_dropout_rate_is_a_fraction():
    dropped = sum(run("a", index=i, dropout_rate=0.3) == "" for i in range(2000))
    assert 450 < dropped < 750


def test_shuffle_keeps_tags_and_keep_tokens_stay_first():
    outputs = {run(TAGS, index=i, shuffle=True, keep_tokens=2) for i in range(50)}
    assert len(outputs) > 10
    for text in outputs:
        tags = text.split(", ")
        assert tags[:2] == ["a", "b"] and sorted(tags) == sorted(TAGS.split(", "))


def test_keep_tokens_separator_fixes_prefix_and_suffix():
    caption = "sks, 1girl ||| b, c, d, e ||| best quality, masterpiece"
    for i in range(30):
        tags = run(caption, index=i, shuffle=True, keep_tokens_separator="|||").split(", ")
        assert tags[:2] == ["sks", "1girl"] and tags[-2:] == ["best quality", "masterpiece"]
        assert sorted(tags[2:-2]) == ["b", "c", "d", "e"]


def test_keep_tokens_separator_removed_even_without_shuffle():
    assert run("sks ||| a, b", keep_tokens_separator="|||") == "sks, a, b"


def test_tag_dropout_never_drops_fixed_tags():
    for i in range(30):
        tags = run(TAGS, index=i, tag_dropout_rate=0.5, keep_tokens=1).split(", ")
        assert tags[0] == "a" and len(tags) <= 8
    assert run(TAGS, tag_dropout_rate=1.0, keep_tokens=1) == "a"


def test_wildcards_choose_and_keep_literal_braces():
    outputs = {run("{red|blue} hair, {{literal}}", index=i, enable_wildcard=True) for i in range(40)}
    assert outputs == {"red hair, {literal}", "blue hair, {literal}"}


def test_wildcard_multiline_picks_a_line():
    outputs = {run("one\ntwo\nthree", index=i, enable_wildcard=True) for i in range(60)}
    assert outputs == {"one", "two", "three"}


def test_secondary_separator_replaced_after_shuffle():
    for i in range(20):
        text = run("a;;;b, c, d", index=i, shuffle=True, secondary_separator=";;;")
        assert "a,b" in text  # the group moved as one tag, then became "a,b"


def test_token_warmup_truncates_flex_tags():
    options = CaptionOptions(token_warmup_min=1, token_warmup_step=10)
    rng = item_rng(0, 1, "0:0:0", "caption")
    assert process_caption(TAGS, options, 1, rng, step=0) == "a"
    assert process_caption(TAGS, options, 1, rng, step=5) == "a, b, c, d"
    assert process_caption(TAGS, options, 1, rng, step=10) == TAGS
    fraction = CaptionOptions(token_warmup_step=0.5)
    assert process_caption(TAGS, fraction, 1, rng, step=0, max_train_steps=20) == "a"


def test_same_seed_epoch_index_position_same_caption():
    first = [run(TAGS, seed=3, epoch=2, index=i, position=1, shuffle=True, tag_dropout_rate=0.2) for i in range(10)]
    again = [run(TAGS, seed=3, epoch=2, index=i, position=1, shuffle=True, tag_dropout_rate=0.2) for i in range(10)]
    other = [run(TAGS, seed=3, epoch=3, index=i, position=1, shuffle=True, tag_dropout_rate=0.2) for i in range(10)]
    assert first == again and first != other


def test_global_rng_is_not_touched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    run(TAGS, shuffle=True, tag_dropout_rate=0.3, dropout_rate=0.1, enable_wildcard=True)
    assert random.random() == expected


def test_static_caption_is_what_text_caches_store():
    options = CaptionOptions(prefix="sks", suffix="z", dropout_rate=0.5, secondary_separator=";")
    assert static_caption("a;b\nsecond", options) == "sks a,b"


def test_per_step_features_list_text_cache_blockers():
    assert CaptionOptions(shuffle=True, enable_wildcard=True).per_step_features() == ["shuffle_caption",
                                                                                      "enable_wildcard"]
    assert CaptionOptions(dropout_rate=0.5, keep_tokens=2).per_step_features() == []


FLAT = {"quality": "newest, safe", "count": "1girl", "character": "hatsune miku", "series": "vocaloid",
        "artist": "@wlop", "appearance": ["long hair", "blue hair", "twintails"], "tags": ["singing", "microphone"],
        "environment": ["stage", "spotlight"], "nl": "Miku sings."}


def test_flat_json_fixed_fields_first_then_groups_then_sentence():
    caption = parse_structured(FLAT, "x.json")
    assert caption.fixed == ("newest", "safe", "1girl", "hatsune miku", "vocaloid", "@wlop")
    assert static_caption(caption, CaptionOptions()) == (
        "newest, safe, 1girl, hatsune miku, vocaloid, @wlop, long hair, blue hair, twintails, singing, "
        "microphone, stage, spotlight. Miku sings.")


def test_json_shuffle_stays_within_each_group():
    caption = parse_structured(FLAT, "x.json")
    seen = set()
    for i in range(40):
        text = run(caption, index=i, shuffle=True)
        tags = text.split(". ")[0].split(", ")
        assert tags[:6] == list(caption.fixed)
        assert sorted(tags[6:9]) == sorted(FLAT["appearance"])
        assert sorted(tags[9:11]) == sorted(FLAT["tags"])
        assert sorted(tags[11:13]) == sorted(FLAT["environment"])
        seen.add(text)
    assert len(seen) > 5


def test_json_tag_dropout_keeps_one_per_group():
    caption = parse_structured(FLAT, "x.json")
    tags = run(caption, tag_dropout_rate=1.0).split(". ")[0].split(", ")
    assert len(tags) == 6 + 3


def test_nested_and_normalised_forms(tmp_path):
    nested = {"fixed": {"quality": "newest", "series": "s", "artist": "@a", "character": "c"},
              "ai_output": {"count": "1girl", "appearance": "red hair, smile", "tags": ["t"], "nl": "Hi."},
              "from_path": {"extra_tags": ["x"]}}
    assert static_caption(parse_structured(nested, "n"), CaptionOptions()) == (
        "newest, 1girl, c, s, @a, red hair, smile, t, x. Hi.")
    normalised = {"meta": {"trigger": "sks"}, "tags": {"quality": ["best"], "character": "c", "tags": ["t"]}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(normalised), encoding="utf-8")
    assert static_caption(load_json_caption(path), CaptionOptions(prefix="p")) == "p sks, best, c, t"


def test_bad_json_caption_names_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.json"):
        load_json_caption(path)
    with pytest.raises(ConfigError, match="appearance"):
        parse_structured({"appearance": 3}, "x.json")


def test_structured_caption_is_value_type():
    assert parse_structured(FLAT, "a") == parse_structured(dict(FLAT), "b")
    assert isinstance(parse_structured(FLAT, "a"), StructuredCaption)
