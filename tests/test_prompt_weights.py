"""ComfyUI's prompt-weight syntax (fixture README, "ComfyUI-specific behaviour") and literal-caption escaping."""

from __future__ import annotations

import logging

import pytest

from library.anima.prompt_weights import escape_literal_caption, parse_prompt_weights


def test_c08_weights_nesting_and_brackets() -> None:
    text = "(masterpiece:1.2), 1girl, (smile), ((blue eyes)), (blurry:0.5), [red hair]"
    assert parse_prompt_weights(text) == [
        ("masterpiece", 1.2),
        (", 1girl, ", 1.0),
        ("smile", pytest.approx(1.1)),
        (", ", 1.0),
        ("blue eyes", pytest.approx(1.21)),
        (", ", 1.0),
        ("blurry", 0.5),
        (", [red hair]", 1.0),
    ]


def test_explicit_weight_inside_nesting() -> None:
    assert parse_prompt_weights("((a):0.5)") == [("a", pytest.approx(0.55))]
    assert parse_prompt_weights("((a:0.5))") == [("a", 0.5)]  # an explicit weight replaces the outer ×1.1
    assert parse_prompt_weights("(x:1e-1) y") == [("x", 0.1), (" y", 1.0)]


def test_non_numeric_colon_is_text_at_1_1() -> None:
    assert parse_prompt_weights("(rating:safe)") == [("rating:safe", pytest.approx(1.1))]
    assert parse_prompt_weights("(:2)") == [(":2", pytest.approx(1.1))]  # a colon at 0 is not a weight


def test_unbalanced_parentheses_stay_literal() -> None:
    assert parse_prompt_weights("1girl, (rating:safe), smile), (open mouth") == [
        ("1girl, ", 1.0),
        ("rating:safe", pytest.approx(1.1)),
        (", smile), (open mouth", 1.0),
    ]
    assert parse_prompt_weights("a (b") == [("a ", 1.0), ("(b", 1.0)]
    assert parse_prompt_weights("a) (b) c") == [("a) (b) c", 1.0)]
    # below zero and back: the group that reopens at depth 0 is a real group again
    assert parse_prompt_weights("a) ((b))") == [("a) (", 1.0), ("b", pytest.approx(1.1)), (")", 1.0)]


def test_square_and_curly_brackets_are_text() -> None:
    assert parse_prompt_weights("[a] {b} <c>") == [("[a] {b} <c>", 1.0)]


def test_backslash_escapes() -> None:
    assert parse_prompt_weights(r"hatsune miku \(cosplay\), solo") == [("hatsune miku (cosplay), solo", 1.0)]
    assert parse_prompt_weights(r"(a \(b\):1.3)") == [("a (b)", 1.3)]


def test_empty_groups_and_text() -> None:
    assert parse_prompt_weights("") == []
    assert parse_prompt_weights("()") == []
    assert parse_prompt_weights(" ") == [(" ", 1.0)]


def test_embedding_is_dropped_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert parse_prompt_weights("1girl, embedding:foo, smile") == [("1girl, ", 1.0), (", smile", 1.0)]
    assert "embedding:foo" in caplog.text
    assert parse_prompt_weights("embedding:bar") == []
    assert parse_prompt_weights("a embedding:x[y] z") == [("a ", 1.0), ("[y] z", 1.0)]
    assert parse_prompt_weights("(b embedding:e:1.5)") == [("b ", 1.5)]
    assert parse_prompt_weights("notembedding:x") == [("notembedding:x", 1.0)]  # only after whitespace


@pytest.mark.parametrize(
    "caption",
    ["hatsune miku (cosplay), 1girl, solo", "((x)), (y:1.5)", ")(", r"a\(b", r"path\to\)", "plain tags, 1girl"],
)
def test_escaped_caption_parses_to_itself(caption: str) -> None:
    assert parse_prompt_weights(escape_literal_caption(caption)) == [(caption, 1.0)]


def test_escape_only_touches_parentheses() -> None:
    assert escape_literal_caption("a (b) [c]") == r"a \(b\) [c]"
