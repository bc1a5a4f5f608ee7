"""Start-up checks of a pivotal-tuning trigger against the dataset's captions, before any model loads.

A trigger is trained as the rows of its T5 pieces, and a row is shared by every word that tokenises to that piece.
So the run lists the pieces, counts how often each one also occurs in the captions' other words (the leak), and
refuses a trigger with a piece that leaks everywhere: a single character (T5 splits made-up words like `sks` into
single letters, each in thousands of words), or a piece found in more than COMMON_SHARE of the other words.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from library.errors import ConfigError

logger = logging.getLogger(__name__)

COMMON_SHARE = 0.05  # a piece in more than 5% of the captions' other words is refused
WORD_START = "\u2581"  # sentencepiece's word-start mark
ADVICE = ("Pick a rarer made-up word whose T5 pieces are at least two characters each, e.g. 'orvantis' "
          "(pieces '▁or', 'vant', 'is'), and check the pieces this run lists")


@dataclass
class TriggerPlan:
    """The trigger's distinct T5 ids in first-seen order (the trained rows), their pieces, and the init text's ids."""

    trigger: str
    token_ids: list[int]
    pieces: list[str]
    init_text: str | None = None
    init_ids: list[int] | None = None


def t5_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The ids the conditioning uses for `text` (no `</s>`), as `library.anima.text.tokenize_caption` makes them."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def contains(ids: Sequence[int], part: Sequence[int]) -> bool:
    return any(list(ids[i:i + len(part)]) == list(part) for i in range(len(ids) - len(part) + 1))


def plan_trigger(trigger: str, init_text: str | None, tokenizer: PreTrainedTokenizerBase,
                 captions: Sequence[str]) -> TriggerPlan:
    """Tokenise the trigger, check it against `captions` (the dataset's fixed caption texts), and log the pieces."""
    sequence = t5_ids(tokenizer, trigger)
    token_ids = list(dict.fromkeys(sequence))
    pieces = tokenizer.convert_ids_to_tokens(token_ids)
    shown = ", ".join(f"{piece!r} ({token})" for piece, token in zip(pieces, token_ids, strict=True))
    logger.info("pivotal tuning: trigger %r is the T5 pieces %s; their %d embedding rows train", trigger, shown,
                len(token_ids))
    _check_occurrence(trigger, sequence, tokenizer, captions)
    _check_leaks(trigger, token_ids, pieces, tokenizer, captions)
    init_ids = t5_ids(tokenizer, init_text) if init_text is not None else None
    if init_ids is not None and not init_ids:
        raise ConfigError(f"--pivotal_init_text {init_text!r} has no T5 pieces: give a word or two of text.")
    return TriggerPlan(trigger, token_ids, pieces, init_text, init_ids)


def _check_occurrence(trigger: str, sequence: list[int], tokenizer: PreTrainedTokenizerBase,
                      captions: Sequence[str]) -> None:
    """The trigger's pieces occur in some caption; captions whose text holds it but whose pieces differ are named."""
    with_text = [c for c in captions if trigger in c]
    with_ids = [c for c in with_text if contains(t5_ids(tokenizer, c), sequence)]
    if not with_ids:
        raise ConfigError(f"--pivotal_trigger {trigger!r} occurs in none of the {len(captions)} captions"
                          + (f" as its own word ({len(with_text)} hold it inside another word)" if with_text else "")
                          + ". Add it to the captions of the images it should stand for (e.g. as the first tag).")
    logger.info("pivotal tuning: %r is in %d of %d captions", trigger, len(with_ids), len(captions))
    if odd := [c for c in with_text if c not in with_ids]:
        logger.warning("pivotal tuning: %d captions hold %r inside another word, where it tokenises differently and "
                       "the trigger rows do not apply (e.g. %r); separate it with a space or comma.",
                       len(odd), trigger, odd[0])


def _check_leaks(trigger: str, token_ids: list[int], pieces: list[str], tokenizer: PreTrainedTokenizerBase,
                 captions: Sequence[str]) -> None:
    """Warn with counts where a piece also occurs in other words; refuse single characters and very common pieces."""
    words = Counter(w for c in captions for w in re.findall(r"[^\s,()]+", c) if w != trigger)
    total = sum(words.values())
    uses: dict[int, Counter[str]] = {token: Counter() for token in token_ids}
    for word, count in words.items():
        for token in set(t5_ids(tokenizer, word)) & set(token_ids):
            uses[token][word] += count
    for piece, token in zip(pieces, token_ids, strict=True):
        count = sum(uses[token].values())
        if token in tokenizer.all_special_ids:
            raise ConfigError(f"--pivotal_trigger {trigger!r}: its T5 piece {piece!r} is a special token (T5 has no "
                              f"piece for some of its characters), shared by every such text. Use Latin letters. "
                              f"{ADVICE}.")
        if len(piece.removeprefix(WORD_START)) <= 1:
            raise ConfigError(f"--pivotal_trigger {trigger!r}: its T5 piece {piece!r} is a single character, shared "
                              f"by a great many words (here {count} of the captions' {total} other words); training "
                              f"its row would change them all. {ADVICE}.")
        if count and count > COMMON_SHARE * total:
            raise ConfigError(f"--pivotal_trigger {trigger!r}: its T5 piece {piece!r} is in {count} of the captions' "
                              f"{total} other words (more than {COMMON_SHARE:.0%}), e.g. "
                              f"{', '.join(repr(w) for w, _ in uses[token].most_common(3))}; training its row would "
                              f"change them all. {ADVICE}.")
        if count:
            logger.warning("pivotal tuning: piece %r of %r also occurs in %d other caption words (e.g. %s): changing "
                           "its row changes them too.", piece, trigger, count,
                           ", ".join(repr(w) for w, _ in uses[token].most_common(3)))
