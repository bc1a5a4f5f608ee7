"""With cached text outputs, Qwen3 is freed before training (issue 5): nothing keeps the model alive."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
from _tiny_run import reset_accelerate, tiny_model

import anima_train_network
from library.args import parse_args


class RecordingTrainer(anima_train_network.AnimaNetworkTrainer):
    """Keeps only a weak reference to the Qwen3 module, and checks it after the trainer released it."""

    qwen_ref: weakref.ref | None = None
    alive_at_first_step: bool | None = None

    def load_target_model(self, args, accelerator, weight_dtype):  # type: ignore[no-untyped-def]
        models = super().load_target_model(args, accelerator, weight_dtype)
        self.qwen_ref = weakref.ref(models.text_encoders[0].qwen)
        return models

    def get_noise_pred_and_target(self, args, accelerator, models, latents, text, generators):  # type: ignore[no-untyped-def]
        if self.alive_at_first_step is None:
            gc.collect()
            self.alive_at_first_step = self.qwen_ref() is not None
        return super().get_noise_pred_and_target(args, accelerator, models, latents, text, generators)


@pytest.mark.parametrize("cache", [True, False])
def test_qwen3_is_freed_only_when_text_outputs_are_cached(tmp_path: Path, cache: bool) -> None:
    tiny = tiny_model(tmp_path / "tiny")
    trainer = RecordingTrainer()
    argv = ["--config_file", str(tiny / "train_args.toml"), "--output_dir", str(tmp_path / "out"),
            "--max_train_steps", "1"]
    args = parse_args(trainer.setup_parser(), argv)
    args.cache_text_encoder_outputs = cache  # the tiny train_args.toml turns it on; a TOML flag has no --no- form
    reset_accelerate()
    try:
        trainer.train(args)
    finally:
        reset_accelerate()
    assert trainer.alive_at_first_step is (not cache)

