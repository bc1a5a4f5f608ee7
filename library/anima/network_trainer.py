"""Anima's hooks for the generic `library.trainer.NetworkTrainer`: which files to load, how latents and the
Qwen3 + T5 conditioning are made, and the rectified-flow noise and target.

Imported by `anima_train_network.main` after the start-up checks (it imports torch, transformers and diffusers).
"""

from __future__ import annotations

import gc
import logging
from argparse import ArgumentParser, Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from library.anima import sample_images as anima_samples
from library.anima.attention_backend import apply_sdpa_backends, resolve_attn_mode
from library.anima.block_swap import enable_block_swap, validate_blocks_to_swap
from library.anima.compile import compile_blocks
from library.anima.conditioning import build_context, collate_text, run_per_context_length
from library.anima.dit_header import inspect_dit_file
from library.anima.flow import broadcast_sigmas, noisy_input, offset_noise, velocity_target
from library.anima.fp8 import apply_fp8_base
from library.anima.loading import load_anima_dit
from library.anima.metadata import anima_metadata
from library.anima.pivotal import attach_trigger_rows, pivotal_metadata, plan_from_dataset
from library.anima.pivotal_args import check_pivotal_values
from library.anima.pivotal_checks import TriggerPlan
from library.anima.seed_options import apply_seed_options
from library.anima.startup import anima_parser, check_model_files, check_model_paths
from library.anima.text import AnimaTextEncoder, TextEncoding
from library.anima.tokenizers import load_t5_tokenizer
from library.anima.vae import AnimaVAE
from library.errors import ConfigError
from library.file_fingerprint import file_fingerprint
from library.network_setup import MODULES_WITHOUT_MODEL_ARGS
from library.registries.timesteps import sample_sigmas
from library.registries.weightings import loss_weighting
from library.sample_draws import per_sample, randn_per_sample
from library.sample_prompts import load_sample_prompts
from library.trainer import ModelParts, NetworkTrainer

logger = logging.getLogger("anima_train_network")


def file_identity(path: str | None) -> str:
    """Name, size and modification time: enough to notice that a cache was made from another file."""
    if not path:
        return "bundled"
    target = Path(path)
    stat = target.stat()
    return f"{target.name}:{stat.st_size}:{int(stat.st_mtime)}"


class AnimaNetworkTrainer(NetworkTrainer):
    """Anima's hooks: model files, VAE latents, Qwen3 + T5 -> llm_adapter conditioning, flow matching."""

    model_version = "anima"
    bucket_reso_multiple = 16  # VAE factor 8 x DiT patch 2
    cache_suffix = "_anima"
    pivotal: TriggerPlan | None = None  # the --pivotal_trigger plan, once the captions are read

    def setup_parser(self) -> ArgumentParser:
        return anima_parser()

    def assert_extra_args(self, args: Namespace) -> None:
        apply_seed_options(args)  # the seed project's options, mapped or warned about
        check_model_paths(args)
        info = inspect_dit_file(args.pretrained_model_name_or_path)
        check_model_files(args)
        check_pivotal_values(args)
        from library.anima.startup_checks import check_before_models  # network, weights, scheduler, compile
        check_before_models(args, self.network_args(args), info.config)
        if args.blocks_to_swap:
            validate_blocks_to_swap(args.blocks_to_swap, info.config.num_blocks)
        self.sdpa_backends = resolve_attn_mode(args.attn_mode, args.xformers, args.split_attn)
        if args.unsloth_offload_checkpointing:  # kohya's async activation offload: ours is checkpointing + CPU offload
            args.gradient_checkpointing = args.cpu_offload_checkpointing = True
        if args.base_weights and (args.fp8_base or args.fp8_base_unet):
            raise ConfigError("--base_weights cannot be merged into fp8 weights (--fp8_base). Merge them into the DiT "
                              "file first with tools/merge_anima_lora.py, then train that file with --fp8_base.")
        self.t5_tokenizer = load_t5_tokenizer(
            args.t5_tokenizer_path, auto_download=args.auto_download_t5_tokenizer, repo_id=args.t5_tokenizer_repo_id,
            subfolder=args.t5_tokenizer_subfolder, modelscope_fallback=args.t5_tokenizer_modelscope_fallback,
            modelscope_repo_id=args.t5_tokenizer_modelscope_repo_id,
            modelscope_revision=args.t5_tokenizer_modelscope_revision,
            modelscope_subfolder=args.t5_tokenizer_modelscope_subfolder)
        anima_samples.validate_sampling_args(args)

    def check_dataset(self, args: Namespace, dataset: Any) -> None:
        """The dataset is read: the pivotal trigger is checked against its captions before any model loads."""
        super().check_dataset(args, dataset)
        self.bucket_shapes = len(dataset.batch_shapes())  # what a static-shape --torch_compile compiles
        self.pivotal = plan_from_dataset(args, self.t5_tokenizer, dataset)

    def extend_network(self, args: Namespace, network: Any, models: ModelParts) -> None:
        if self.pivotal is not None:
            attach_trigger_rows(args, network, models.denoiser, self.pivotal)

    def state_identity(self, args: Namespace) -> dict[str, Any]:
        """A resume must train the same trigger rows (the state holds them, and when they freeze)."""
        pivotal = {name: getattr(args, name, None) for name in ("pivotal_trigger", "pivotal_init_text",
                                                                "pivotal_train_steps")}
        return super().state_identity(args) | {"pivotal": pivotal}

    def load_target_model(self, args: Namespace, accelerator: Any, weight_dtype: torch.dtype) -> ModelParts:
        device = accelerator.device
        if device.type == "cpu":  # gloo runs report "cpu:0", which safetensors refuses as a load device
            device = torch.device("cpu")
        dit = load_anima_dit(args.pretrained_model_name_or_path, dtype=weight_dtype, device="cpu")
        if args.fp8_base or args.fp8_base_unet:
            apply_fp8_base(dit, weight_dtype)  # before the network wraps the Linears' forward
        vae_dtype = torch.float32 if args.no_half_vae else weight_dtype
        vae = AnimaVAE.load(args.vae, dtype=vae_dtype, device=device)
        if args.vae_chunk_size:
            vae.enable_tiling(args.vae_chunk_size * 8)
        text_encoder = AnimaTextEncoder.load(args.qwen3, dtype=weight_dtype, device=device,
                                             t5_tokenizer=self.t5_tokenizer)
        return ModelParts(denoiser=dit, text_encoders=[text_encoder], vae=vae)

    def place_denoiser(self, args: Namespace, accelerator: Any, models: ModelParts, weight_dtype: torch.dtype) -> None:
        """fp8 storage survives the cast; block swap keeps N blocks on the CPU; then attention kernels and compile.
        With latents cached, the VAE waits on the CPU (sampling brings it back for decoding)."""
        dit = models.denoiser
        if args.cache_latents and models.vae is not None:
            models.vae.to("cpu")
        if args.blocks_to_swap:
            dit.to(dtype=weight_dtype)
            enable_block_swap(dit, args.blocks_to_swap, accelerator.device)
        else:
            dit.to(accelerator.device, dtype=weight_dtype)
        apply_sdpa_backends(self.sdpa_backends)
        if args.torch_compile:
            self.compile_ledger = compile_blocks(dit, backend=args.dynamo_backend, dynamic=args.torch_compile_dynamic,
                                                 bucket_shapes=self.bucket_shapes)

    def base_model_identity(self, args: Namespace) -> dict[str, dict[str, Any]]:
        """The DiT alone: the LoRA is trained against its weights. The VAE and Qwen3 only make the inputs (their
        caches check them), so a resume with another VAE is allowed."""
        return {"DiT": file_fingerprint(args.pretrained_model_name_or_path)}

    def latent_cache_identity(self, args: Namespace) -> dict[str, str]:
        """The VAE file and the precision it encodes in (bf16 latents differ from fp32 ones)."""
        return {"vae": file_identity(args.vae), "dtype": "no" if args.no_half_vae else args.mixed_precision}

    def encode_images_to_latents(self, args: Namespace, models: ModelParts, images: torch.Tensor) -> torch.Tensor:
        return models.vae.encode(images).float()

    def text_cache_identity(self, args: Namespace) -> dict[str, str]:
        return {"qwen3": file_identity(args.qwen3), "t5_tokenizer": file_identity(args.t5_tokenizer_path),
                "recipe": "comfyui-anima-v1", "dtype": args.mixed_precision}

    def encode_text(self, args: Namespace, models: ModelParts, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        # with gradients only where the caller enables them: a training step whose text-encoder LoRA trains
        encodings = models.text_encoders[0].encode(captions, parse_weights=False, grad=torch.is_grad_enabled())
        return [{"qwen_hidden": e.qwen_hidden, "t5_ids": e.t5_ids, "t5_weights": e.t5_weights} for e in encodings]

    def release_text_encoders(self, args: Namespace, models: ModelParts) -> None:
        if args.sample_prompts and models.text_encoders:
            self.sample_prompt_encodings = anima_samples.encode_sample_prompts(
                models.text_encoders[0], load_sample_prompts(args.sample_prompts))
        models.text_encoders.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def network_kwargs(self, args: Namespace) -> dict[str, str]:
        if args.network_module in MODULES_WITHOUT_MODEL_ARGS:  # LyCORIS's own network keeps its own defaults
            return {}
        return {"train_norm": str(bool(args.train_norm))}

    def get_noise_pred_and_target(
        self, args: Namespace, accelerator: Any, models: ModelParts, latents: torch.Tensor,
        text: list[dict[str, torch.Tensor]], generators: Sequence[torch.Generator],
        sigmas: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        dit = models.denoiser
        device, dtype = latents.device, next(dit.parameters()).dtype
        batch = collate_text([TextEncoding(**t) for t in text])  # on the host: masks are read there, not on the GPU
        context = build_context(dit.llm_adapter, batch)
        noise = offset_noise(randn_per_sample(latents.shape, generators, device, latents.dtype), args.anima_noise_offset,
                             generators)
        if sigmas is None:
            hw = tuple(latents.shape[-2:])
            sigmas = per_sample(lambda g: sample_sigmas(args, 1, hw, device, g), generators)
        model_noise = noise
        if args.ip_noise_gamma:
            extra = randn_per_sample(latents.shape, generators, device, latents.dtype)
            gamma = torch.full((latents.shape[0],), args.ip_noise_gamma, device=device)
            if args.ip_noise_gamma_random_strength:
                gamma = gamma * per_sample(lambda g: torch.rand(1, generator=g, device=device), generators)
            model_noise = noise + broadcast_sigmas(gamma, extra) * extra
        x = noisy_input(latents, model_noise, sigmas).unsqueeze(2)
        pred = run_per_context_length(dit, x.to(dtype), sigmas.to(dtype), context.to(dtype), batch["t5_mask"]).squeeze(2)
        return pred, velocity_target(latents, noise), sigmas, loss_weighting(args, sigmas)

    def sample_images(self, accelerator: Any, args: Namespace, epoch: int | None, global_step: int,
                      models: ModelParts, network: Any) -> list[Path]:
        return anima_samples.sample_images(accelerator, args, epoch, global_step, models, network,
                                           encoded=getattr(self, "sample_prompt_encodings", None))

    def update_metadata(self, metadata: dict[str, str], args: Namespace) -> None:
        metadata.update(anima_metadata(args))
        metadata.update(pivotal_metadata(args, self.pivotal))
