"""The run's settings as the monitor page lists them: what was trained, how, on what, and the memory options."""

from __future__ import annotations

from argparse import Namespace

# (label, option) in the page's order; an option this trainer lacks or leaves unset is left out
OPTIONS = (("network", "network_module"), ("dim", "network_dim"), ("alpha", "network_alpha"),
           ("network args", "network_args"), ("learning rate", "learning_rate"), ("scheduler", "lr_scheduler"),
           ("batches accumulated", "gradient_accumulation_steps"), ("seed", "seed"),
           ("mixed precision", "mixed_precision"), ("gradient checkpointing", "gradient_checkpointing"),
           ("blocks to swap", "blocks_to_swap"), ("fp8 base", "fp8_base"), ("full bf16", "full_bf16"),
           ("cache latents", "cache_latents"), ("cache text encoder outputs", "cache_text_encoder_outputs"),
           ("output", "output_name"))
# dataset figures from the LoRA metadata the trainer already built
DATASET_KEYS = (("train images", "ss_num_train_images"), ("regularisation images", "ss_num_reg_images"),
                ("validation images", "ss_num_validation_images"), ("batches per epoch", "ss_num_batches_per_epoch"),
                ("epochs", "ss_num_epochs"))


def run_settings(args: Namespace, metadata: dict[str, str]) -> dict[str, str]:
    settings = {"optimizer": str(getattr(args, "_optimizer_description", None) or args.optimizer_type or "AdamW")}
    for label, option in OPTIONS:
        value = getattr(args, option, None)
        if value not in (None, False, "", []):
            settings[label] = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    for label, key in DATASET_KEYS:
        if key in metadata:
            settings[label] = str(metadata[key])
    return settings
