"""--resume continues exactly (issue 7): N steps == N/2 steps + resume for N/2, bit-equal in fp32 on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import toml
import torch
from _tiny_run import read_losses, state_dict_of, tiny_model, train

from library.errors import ConfigError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def shuffled_dataset(tiny: Path, work: Path) -> Path:
    """The tiny dataset with comma-separated tags shuffled every step (so text is encoded live, not cached)."""
    folder = work / "tagged"
    folder.mkdir()
    for image in sorted((tiny / "dataset").glob("*.png")):
        (folder / image.name).write_bytes(image.read_bytes())
        words = image.with_suffix(".txt").read_text(encoding="utf-8").split()
        (folder / image.with_suffix(".txt").name).write_text(", ".join(words), encoding="utf-8")
    config = toml.loads((tiny / "dataset.toml").read_text(encoding="utf-8"))
    config["datasets"][0]["subsets"][0]["image_dir"] = str(folder)
    config["datasets"][0]["subsets"][0]["shuffle_caption"] = True
    path = work / "tagged.toml"
    path.write_text(toml.dumps(config), encoding="utf-8")
    return path


CASES = {
    "mid_epoch_adamw": (),
    "grad_accum_shuffle_cosine": ("--gradient_accumulation_steps", "2", "--lr_scheduler", "cosine",
                                  "--lr_warmup_steps", "2"),
    "schedule_free": ("--optimizer_type", "AdamWScheduleFree"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_replays_the_same_steps(tiny: Path, tmp_path: Path, case: str) -> None:
    extra = ("--max_train_steps", "8", "--save_every_n_steps", "4", "--save_state", "--learning_rate", "5e-3",
             *CASES[case])
    dataset = shuffled_dataset(tiny, tmp_path) if "shuffle" in case else None
    full = train(tiny, tmp_path / "full", *extra, dataset=dataset)
    state = full / "anima_tiny_lora-step00000004-state"
    assert (state / "train_state.json").is_file() and (state / "model.safetensors").is_file()
    resumed = train(tiny, tmp_path / "resumed", *extra, "--resume", str(state), dataset=dataset)

    full_losses, resumed_losses = read_losses(full), read_losses(resumed)
    assert [step for step, _ in resumed_losses] == list(range(5, 9))
    assert resumed_losses == full_losses[4:], "per-step losses after resume differ"
    a = state_dict_of(full / "anima_tiny_lora.safetensors")
    b = state_dict_of(resumed / "anima_tiny_lora.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights are not bit-equal"


def test_resume_into_a_different_network_fails_at_start(tiny: Path, tmp_path: Path) -> None:
    out = train(tiny, tmp_path / "a", "--max_train_steps", "2", "--save_state")
    with pytest.raises(ConfigError, match="network_dim: state has 4, this run has 8"):
        from anima_train_network import AnimaNetworkTrainer
        from library.args import parse_args

        trainer = AnimaNetworkTrainer()
        args = parse_args(trainer.setup_parser(), ["--config_file", str(tiny / "train_args.toml"), "--output_dir",
                                                  str(tmp_path / "b"), "--network_dim", "8",
                                                  "--resume", str(out / "anima_tiny_lora-state")])
        trainer.validate(args)
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_warm_start_is_announced_and_distinct_from_resume(tiny: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = train(tiny, tmp_path / "a", "--max_train_steps", "2")
    train(tiny, tmp_path / "b", "--max_train_steps", "2", "--network_weights",
          str(first / "anima_tiny_lora.safetensors"))
    out = capsys.readouterr().out
    assert "warm start" in out and "optimizer and schedule start fresh" in out
    assert [step for step, _ in read_losses(tmp_path / "b")] == [1, 2]
