"""When a real training run samples (issue 16 point 3): kohya's points and names, the last epoch included.

Real runs of anima_train_network.py on the tiny model (6 batches per epoch), two 64x64 prompts at 2 sampler
steps. kohya samples before training with `--sample_at_first` (as epoch 0), after every N-th epoch with
`--sample_every_n_epochs` (the last one too, and no step samples then), else at every N-th step.

Breaks these tests catch (each was made once and failed them):
- library/train_loop.py `_run_epoch` returning at --max_train_steps before `_after_epoch` (the old code): the
  last epoch's images are missing;
- library/train_loop.py `_after_step` sampling every N steps although --sample_every_n_epochs is set;
- library/train_loop.py `_sample` without its `is_main_process` test: the 2-process run renders every point twice.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _launch import launch
from _tiny_run import tiny_model, train

NAME = "anima_tiny_lora"
PROMPTS = "a red circle --w 64 --h 64 --s 2\na blue square --w 64 --h 64 --s 2 --d 7\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text(PROMPTS, encoding="utf-8")
    return path


def expected(*points: str) -> list[str]:
    """Both prompts at each point: prompt 0 has seed --seed (42) + 0, prompt 1 its own --d 7."""
    return sorted(f"{NAME}_{point}_{index:02d}_{seed}.png" for point in points for index, seed in ((0, 42), (1, 7)))


def written(out: Path) -> list[str]:
    return sorted(path.name for path in (out / "sample").iterdir())


def test_every_epoch_is_sampled_the_last_included(tiny: Path, prompts: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "out", "--max_train_epochs", "2", "--sample_prompts", str(prompts),
                "--sample_at_first", "--sample_every_n_epochs", "1", "--sample_every_n_steps", "4")
    assert written(out) == expected("e000000", "e000001", "e000002")


def test_every_n_steps_is_sampled_and_no_epoch_end(tiny: Path, prompts: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "out", "--max_train_steps", "9", "--sample_prompts", str(prompts),
                "--sample_every_n_steps", "4")
    assert written(out) == expected("000004", "000008")


def test_only_the_main_process_samples_in_a_two_process_run(tiny: Path, prompts: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    log = launch(2, tiny, out, "--max_train_epochs", "2", "--sample_prompts", str(prompts), "--sample_at_first",
                 "--sample_every_n_epochs", "1")
    assert written(out) == expected("e000000", "e000001", "e000002")
    assert len(re.findall(r"rendering 2 sample image\(s\)", log)) == 3, log[-4000:]
