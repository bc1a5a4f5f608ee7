"""The validation split (`validation_split`, `validation_seed`): which images of a subset are held out.

kohya's rule (`split_train_val`): shuffle the subset's sorted file list with `random.seed(validation_seed)`, train
on the first `ceil(n * (1 - split))`. Two differences, both so that train and validation never share an image:
validation is the rest of the list (kohya takes the last `round(n * split)`, which repeats a training image when
`n * split` ends in .5 or more), and an unset `validation_seed` falls back to `--seed` (kohya shuffles with the
global RNG, which has moved on between building its training and its validation dataset).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random

from library.dataset.sources import ImageItem

logger = logging.getLogger(__name__)


def validation_fraction(split: float, where: str) -> float:
    """The fraction to hold out; a value outside [0, 1] is ignored with kohya's warning."""
    if 0.0 <= split <= 1.0:
        return split
    logger.warning("%s: Dataset param `validation_split` (%s) is not a valid number between 0.0 and 1.0, skipping "
                   "validation split...", where, split)
    return 0.0


def split_items(items: list[ImageItem], fraction: float, seed: int) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, validation) of one subset. A private `random.Random(seed)` draws the same permutation as kohya's
    `random.seed(seed)` and leaves the global RNG untouched. Training images keep their folder order; validation
    images count once (num_repeats 1)."""
    if fraction <= 0.0 or not items:
        return items, []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = math.ceil(len(order) * (1.0 - fraction))
    train = [items[i] for i in sorted(order[:cut])]  # folder order kept, as without a split
    return train, [dataclasses.replace(items[i], num_repeats=1) for i in order[cut:]]
