"""Every registered optimizer trains the tiny model (issue 9): real steps that lower a fixed evaluation loss; and
schedule-free optimizers are in eval mode (averaged weights x) whenever the loop samples or saves, in train mode
(y) when it steps.

The optimizers come from the registry, so a new entry is covered without editing this file (it gets DEFAULT_LR
unless LEARNING_RATES names it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _tiny_run import fixed_eval_loss, one_image_dataset, state_dict_of, tiny_model, train

from anima_train_network import AnimaNetworkTrainer
from library.registries.optimizers import OPTIMIZERS
from networks._base import AnimaAdapterNetwork

STEPS = "12"
DEFAULT_LR = 1e-2
# Sign-based updates need a smaller step, plain SGD a larger one; Prodigy estimates its own (lr is a multiplier);
# RAdam makes no update until its variance estimate is rectified (about 5 steps), so it needs a larger one.
LEARNING_RATES = {
    "Lion": 2e-3, "Lion8bit": 2e-3, "PagedLion8bit": 2e-3,
    "SGDNesterov": 0.5, "SGDNesterov8bit": 0.5, "SGDScheduleFree": 1.0,
    "Prodigy": 1.0, "RAdamScheduleFree": 0.1,
}
EXTRA_ARGS = {"AdaFactor": ("--optimizer_args", "relative_step=False", "scale_parameter=False", "warmup_init=False")}
SCHEDULE_FREE = [name for name in OPTIMIZERS.names() if OPTIMIZERS.get(name).schedule_free]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def one_image(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(dataset.toml, image, caption) of the one-image dataset."""
    work = tmp_path_factory.mktemp("one")
    dataset = one_image_dataset(tiny, work)
    image = sorted((work / "one_image").glob("*.png"))[0]
    return dataset, image, image.with_suffix(".txt").read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def loss_before(tiny: Path, one_image: tuple[Path, Path, str]) -> float:
    _, image, caption = one_image
    return fixed_eval_loss(tiny, image, caption)


def optimizer_cli(name: str) -> tuple[str, ...]:
    return ("--optimizer_type", name, "--learning_rate", str(LEARNING_RATES.get(name, DEFAULT_LR)),
            *EXTRA_ARGS.get(name, ()))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_lowers_the_fixed_loss(tiny: Path, one_image: tuple[Path, Path, str], loss_before: float,
                                         tmp_path: Path, name: str) -> None:
    dataset, image, caption = one_image
    out = train(tiny, tmp_path / "out", "--max_train_steps", STEPS, *optimizer_cli(name), dataset=dataset)
    after = fixed_eval_loss(tiny, image, caption, out / "anima_tiny_lora.safetensors")
    assert after < 0.8 * loss_before, f"{name}: fixed loss {loss_before:.4f} -> {after:.4f}"


class ModeRecorder:
    """Hooks the optimizer class and the loop's call sites to record the optimizer's mode at each of them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, optimizer_class: type) -> None:
        self.optimizers: list[Any] = []
        self.events: list[tuple[str, bool]] = []  # (where, optimizer was in train mode)
        self.saves: list[tuple[str, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []  # file, current, other
        self.sampled: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
        recorder = self
        init, step_hook = optimizer_class.__init__, AnimaNetworkTrainer.get_noise_pred_and_target
        save = AnimaAdapterNetwork.save_weights

        def capture_init(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            init(optimizer, *args, **kwargs)
            recorder.optimizers.append(optimizer)

        def on_step(trainer: Any, *args: Any, **kwargs: Any) -> Any:
            recorder.events.append(("step", recorder.train_mode()))
            return step_hook(trainer, *args, **kwargs)

        def on_sample(trainer: Any, accelerator: Any, args: Any, epoch: Any, step: int, models: Any,
                      network: Any) -> None:
            recorder.events.append(("sample", recorder.train_mode()))
            recorder.sampled.append(recorder.both_modes(network))

        def on_save(network: AnimaAdapterNetwork, file: Any, dtype: Any, metadata: Any) -> None:
            recorder.events.append(("save", recorder.train_mode()))
            save(network, file, dtype, metadata)
            recorder.saves.append((str(file), *recorder.both_modes(network)))

        monkeypatch.setattr(optimizer_class, "__init__", capture_init)
        monkeypatch.setattr(AnimaNetworkTrainer, "get_noise_pred_and_target", on_step)
        monkeypatch.setattr(AnimaNetworkTrainer, "sample_images", on_sample)
        monkeypatch.setattr(AnimaAdapterNetwork, "save_weights", on_save)

    def train_mode(self) -> bool:
        return all(group["train_mode"] for group in self.optimizers[-1].param_groups)

    def both_modes(self, network: AnimaAdapterNetwork) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The weights as they are now, and as they would be in the other mode. The mode is restored after, but
        the round trip through the other mode is not bit-exact: call this after the weights were used."""
        optimizer = self.optimizers[-1]
        now = {k: v.detach().clone() for k, v in network.file_state_dict().items()}
        was_training = self.train_mode()
        optimizer.eval() if was_training else optimizer.train()
        other = {k: v.detach().clone() for k, v in network.file_state_dict().items()}
        optimizer.train() if was_training else optimizer.eval()
        return now, other


def differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", SCHEDULE_FREE)
def test_schedule_free_samples_and_saves_the_eval_weights(tiny: Path, one_image: tuple[Path, Path, str],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          name: str) -> None:
    recorder = ModeRecorder(monkeypatch, OPTIMIZERS.get(name).load_class())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle --w 64 --h 64 --s 2 --d 1\n", encoding="utf-8")
    out = train(tiny, tmp_path / "out", "--max_train_steps", "9", "--save_every_n_steps", "4",
                "--sample_every_n_steps", "4", "--sample_prompts", str(prompts), *optimizer_cli(name),
                dataset=one_image[0])

    kinds = [kind for kind, _ in recorder.events]
    assert kinds.count("step") == 9 and kinds.count("sample") >= 2 and kinds.count("save") >= 2, kinds
    assert all(training for kind, training in recorder.events if kind == "step"), recorder.events
    assert not any(training for kind, training in recorder.events if kind != "step"), recorder.events
    # by the last sample the modes hold different weights (RAdam makes no update for its first steps), so a
    # missing switch would change what is sampled
    assert differs(*recorder.sampled[-1])
    final_file, eval_weights, train_weights = recorder.saves[-1]
    saved = state_dict_of(out / "anima_tiny_lora.safetensors")
    assert final_file == str(out / "anima_tiny_lora.safetensors")
    assert all(torch.equal(saved[k], eval_weights[k]) for k in eval_weights), "file is not the eval weights x"
    assert differs(saved, train_weights)
