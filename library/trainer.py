"""The generic, model-free network trainer: set-up in the order kohya's NetworkTrainer uses, with hooks.

A model subclass overrides the hooks (load the models, encode images and text, compute the prediction
and target, sample images, describe the model for metadata); nothing here knows which model it trains.
The step loop itself lives in `library.train_loop`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from argparse import ArgumentParser, Namespace
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from library import state as state_lib
from library import tracking
from library.accelerator_setup import make_accelerator, shared_random_seed
from library.args import build_parser
from library.batch_loader import build_batch_loader
from library.dataset import build_dataset_group
from library.dataset.preview import print_dataset_preview
from library.errors import ConfigError
from library.input_checks import check_inputs
from library.memory_estimate import check_memory_fits
from library.metadata import base_metadata, parse_network_args
from library.network_setup import (
    check_network_file_options,
    create_trained_network,
    import_network_module,
    merge_base_weights,
    optimizer_params,
)
from library.option_support import check_option_support
from library.output_caching import cache_outputs, check_cache_options
from library.registries import validate_registries
from library.registries.optimizers import build_optimizer, check_optimizer_builds, optimizer_identity
from library.registries.optimizers.fused_backward import enable_fused_backward
from library.registries.schedulers import build_lr_scheduler
from library.saving import probe_output_dir
from library.text_encoder_lora import trained_parts

logger = logging.getLogger(__name__)

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class ModelParts:
    """What `load_target_model` returns: the denoiser (frozen), text encoders, VAE, and anything else."""

    denoiser: torch.nn.Module
    text_encoders: list[Any] = field(default_factory=list)
    vae: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


class NetworkTrainer:
    """Subclasses override the hook methods below; `train` is the same for every model."""

    model_version = "unknown"
    bucket_reso_multiple = 8
    cache_suffix = ""  # model tag in cache file names, e.g. "_anima"

    # ---- hooks -------------------------------------------------------------------------------------
    def setup_parser(self) -> ArgumentParser:
        return build_parser("Train a LoRA / LoKr network (kohya sd-scripts compatible).")

    def assert_extra_args(self, args: Namespace) -> None:
        """Model-specific option checks; runs before anything is loaded."""

    def check_dataset(self, args: Namespace, dataset: Any) -> None:
        """Checks that need the dataset read but no model loaded: the cache options (a model adds its own)."""
        check_cache_options(args, dataset, self.cache_suffix)

    def load_target_model(self, args: Namespace, accelerator: Accelerator, weight_dtype: torch.dtype) -> ModelParts:
        raise NotImplementedError

    def latent_cache_identity(self, args: Namespace) -> dict[str, str]:
        raise NotImplementedError

    def encode_images_to_latents(self, args: Namespace, models: ModelParts, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_cache_identity(self, args: Namespace) -> dict[str, str]:
        raise NotImplementedError

    def encode_text(self, args: Namespace, models: ModelParts, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def release_text_encoders(self, args: Namespace, models: ModelParts) -> None:
        """Called when text outputs are cached: the text encoders are no longer needed in memory."""

    def place_denoiser(self, args: Namespace, accelerator: Accelerator, models: ModelParts,
                       weight_dtype: torch.dtype) -> None:
        """Put the frozen denoiser on its device (a model may keep parts elsewhere, e.g. block swap)."""
        models.denoiser.to(accelerator.device, dtype=weight_dtype)

    def extend_network(self, args: Namespace, network: Any, models: ModelParts) -> None:
        """Add the model's own trained parts to the network before --network_weights loads (none by default)."""

    def network_kwargs(self, args: Namespace) -> dict[str, str]:
        """Extra `network_args` the model adds (e.g. Anima's --train_norm)."""
        return {}

    def network_args(self, args: Namespace) -> dict[str, str]:
        """The model's defaults, overridden by what the user wrote in --network_args."""
        return self.network_kwargs(args) | parse_network_args(getattr(args, "network_args", None))

    def get_noise_pred_and_target(
        self, args: Namespace, accelerator: Accelerator, models: ModelParts, latents: torch.Tensor,
        text: list[dict[str, torch.Tensor]], generators: Sequence[torch.Generator],
        sigmas: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns (prediction, target, sigmas (B,), per-sample loss weighting or None). Sample b's random draws come
        from `generators[b]` alone (library/sample_draws.py). Validation passes `sigmas` (B,) to score at fixed noise
        levels; training leaves it None and the model samples them."""
        raise NotImplementedError

    def sample_images(self, accelerator: Accelerator, args: Namespace, epoch: int | None, global_step: int,
                      models: ModelParts, network: Any) -> list[Path]:
        """Render sample images if this call should; returns the files written (the default model has none)."""
        return []

    def update_metadata(self, metadata: dict[str, str], args: Namespace) -> None:
        """Add model-specific `ss_*` / `modelspec.*` keys."""

    def base_model_identity(self, args: Namespace) -> dict[str, dict[str, Any]]:
        """{role: file fingerprint} of the frozen model files a state must resume onto (the default model has none)."""
        return {}

    def state_identity(self, args: Namespace) -> dict[str, Any]:
        """What a resumed run must share with the run that wrote the state."""
        return {key: getattr(args, key, None) for key in ("network_module", "network_dim", "network_alpha")} | {
            "network_args": self.network_args(args), "trained_parts": trained_parts(args)} | optimizer_identity(args)

    # ---- set-up ------------------------------------------------------------------------------------
    def validate(self, args: Namespace) -> state_lib.TrainState | None:
        """Every check that needs no model: fails in the first second with a message naming the culprit."""
        validate_registries(args)
        check_option_support(args)
        check_optimizer_builds(args)
        tracking.validate_tracking(args)
        self.assert_extra_args(args)
        if args.network_module is None:
            raise ConfigError("--network_module is not set. Use --network_module networks.lora_anima "
                              "(or networks.lokr_anima, networks.loha_anima).")
        try:
            module = import_network_module(args.network_module)
        except ImportError as exc:
            raise ConfigError(f"--network_module {args.network_module}: cannot import it ({exc}). "
                              f"Use networks.lora_anima or networks.lokr_anima.") from exc
        if hasattr(module, "check_network_args"):  # names checked now; a typo must not cost a model load
            module.check_network_args(self.network_args(args))
        check_network_file_options(args)
        check_inputs(args)
        resume = None
        if args.resume:
            resume = state_lib.read_train_state(args.resume)
            state_lib.check_process_count(args.resume, resume, int(os.environ.get("WORLD_SIZE", "1")))
            state_lib.check_identity(args.resume, resume.identity, self.state_identity(args))
            if warning := state_lib.check_base_model(args.resume, resume.base_model, self.base_model_identity(args)):
                logger.warning(warning)
        probe_output_dir(args.output_dir)
        return resume

    def train(self, args: Namespace) -> None:
        from library.train_loop import TrainLoop

        started_at = time.time()
        resume = self.validate(args)
        accelerator = make_accelerator(args)
        if args.seed is None:
            args.seed = shared_random_seed(accelerator)
            logger.info("no --seed given: using %d", args.seed)
        dataset = build_dataset_group(args, reso_multiple=self.bucket_reso_multiple)
        if args.debug_dataset:
            print_dataset_preview(dataset)
            return
        self.check_dataset(args, dataset)
        check_memory_fits(args, dataset, accelerator.device)
        steps_per_epoch, num_epochs = self._schedule(args, len(dataset), accelerator.num_processes)
        if resume is not None and resume.current_step >= args.max_train_steps:
            accelerator.print(state_lib.nothing_left_message(args.resume, resume.current_step, args.max_train_steps))
            return

        torch.manual_seed(args.seed)
        weight_dtype = WEIGHT_DTYPES[args.mixed_precision]
        models = self.load_target_model(args, accelerator, weight_dtype)
        merge_base_weights(args, models, accelerator.print)  # kohya's order: the caches come from the merged model
        cache_outputs(self, args, accelerator, models, dataset)

        network = self._create_network(args, models, accelerator)
        if args.gradient_checkpointing and hasattr(models.denoiser, "enable_gradient_checkpointing"):
            models.denoiser.enable_gradient_checkpointing(cpu_offload=bool(args.cpu_offload_checkpointing))
        models.denoiser.requires_grad_(False)
        self.place_denoiser(args, accelerator, models, weight_dtype)
        if args.full_bf16:
            network.to(torch.bfloat16)
        elif args.full_fp16:
            network.to(torch.float16)

        groups, descriptions = self._param_groups(args, network)
        bundle = build_optimizer(args, groups)
        enable_fused_backward(args, bundle.optimizer)  # kohya's Adafactor step per parameter, inside backward
        args._optimizer_description = bundle.description
        loader = build_batch_loader(args, dataset)
        scheduler = build_lr_scheduler(args, bundle.optimizer, args.max_train_steps, accelerator.num_processes)
        network, optimizer, loader, scheduler = accelerator.prepare(network, bundle.optimizer, loader, scheduler)

        metadata = base_metadata(args, self.model_version, num_epochs, started_at)
        metadata.update(dataset.metadata())
        self.update_metadata(metadata, args)
        loop = TrainLoop(self, args, accelerator, models, network, optimizer, scheduler, bundle, loader, dataset,
                         descriptions, metadata, steps_per_epoch, num_epochs)
        if resume is not None:
            accelerator.load_state(args.resume)
            loop.restore(resume)
            logger.info("resumed from %s at step %d (epoch %d)", args.resume, resume.current_step,
                        resume.current_epoch)
        loop.started_at = started_at
        tracking.init_trackers(accelerator, args)
        loop.run()

    # ---- pieces of set-up --------------------------------------------------------------------------
    @staticmethod
    def _schedule(args: Namespace, num_batches: int, num_processes: int) -> tuple[int, int]:
        """(steps per epoch, epochs) from the dataset's batch count alone, so a resume with nothing left to train
        stops before any model loads; sets --max_train_steps from --max_train_epochs."""
        steps_per_epoch = math.ceil(num_batches / num_processes / args.gradient_accumulation_steps)
        if args.max_train_epochs:
            args.max_train_steps = args.max_train_epochs * steps_per_epoch
        num_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
        if args.save_n_epoch_ratio:
            args.save_every_n_epochs = max(1, num_epochs // args.save_n_epoch_ratio)
        return steps_per_epoch, num_epochs

    def _create_network(self, args: Namespace, models: ModelParts, accelerator: Accelerator) -> Any:
        torch.manual_seed(args.seed)  # the network's initial weights depend on --seed alone, not on what loaded before
        return create_trained_network(args, models, self.network_args(args), accelerator.print, self.extend_network)

    def _param_groups(self, args: Namespace, network: Any) -> tuple[list[dict[str, Any]], list[str]]:
        result = optimizer_params(network, args)  # our group lrs only where the network takes them
        if isinstance(result, tuple):
            return result
        return result, [f"group{i}" for i in range(len(result))]
