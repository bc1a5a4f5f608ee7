"""Network (LoRA/LoKr) options (kohya `train_network.setup_parser`), plus our per-part learning rates."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("network")
    g.add_argument(
        "--network_module", type=str, default=None, help="Network module to train (e.g. networks.lora_anima)."
    )
    g.add_argument("--network_dim", type=int, default=None, help="Rank (the network's own default when unset).")
    g.add_argument("--network_alpha", type=float, default=1, help="Alpha: the update is scaled by alpha / rank.")
    g.add_argument("--network_dropout", type=float, default=None, help="Neuron dropout probability.")
    g.add_argument(
        "--network_args", type=str, default=None, nargs="*", help="Extra network arguments as key=value strings."
    )
    g.add_argument("--network_weights", type=str, default=None, help="Start from these network weights.")
    g.add_argument("--dim_from_weights", action="store_true", help="Take rank and shapes from --network_weights.")
    g.add_argument("--network_train_unet_only", action="store_true",
                   help="Train only the DiT (no Qwen3 text-encoder LoRA). Without it, and with text-encoder outputs not "
                        "cached, a Qwen3 LoRA trains too, as in kohya; cached outputs train the DiT only.")
    g.add_argument("--network_train_text_encoder_only", action="store_true",
                   help="Train only the Qwen3 text-encoder LoRA (saved as kohya's lora_te_* keys); not with cached "
                        "text-encoder outputs.")
    g.add_argument(
        "--unet_lr", type=float, default=None, help="Learning rate of the DiT LoRA (default --learning_rate)."
    )
    g.add_argument(
        "--text_encoder_lr", type=float, default=None, nargs="*",
        help="Learning rate of the Qwen3 text-encoder LoRA (kohya's list form: the first value is used; default "
             "--learning_rate).",
    )
    g.add_argument(
        "--llm_adapter_lr",
        type=float,
        default=None,
        help="Learning rate of the llm_adapter LoRA (default: the DiT LR); lower it if adapter training is unstable.",
    )
    g.add_argument(
        "--norm_lr", type=float, default=None, help="Learning rate of trained norm scales (default: the DiT LR)."
    )
    g.add_argument("--training_comment", type=str, default=None, help="Free text stored as ss_training_comment.")
    g.add_argument(
        "--scale_weight_norms", type=float, default=None, help="Max-norm regularisation of the network weights."
    )
    g.add_argument(
        "--base_weights", type=str, default=None, nargs="*", help="Network files merged into the model before training."
    )
    g.add_argument(
        "--base_weights_multiplier", type=float, default=None, nargs="*", help="Multipliers for --base_weights."
    )
    g.add_argument(
        "--no_half_vae",
        action="store_true",
        help="Run the VAE in fp32 under --mixed_precision bf16 / fp16 (without it the VAE takes that dtype).",
    )
    g.add_argument("--no_metadata", action="store_true", help="Write only the minimum metadata into the saved file.")
    g.add_argument(
        "--save_model_as",
        type=str,
        default="safetensors",
        choices=[None, "ckpt", "pt", "safetensors"],
        help="File format of the saved network.",
    )
    g.add_argument(
        "--skip_until_initial_step",
        action="store_true",
        help="On --initial_step/--initial_epoch, skip the batches before it.",
    )
    g.add_argument("--initial_epoch", type=int, default=None, help="Start counting at this epoch.")
    g.add_argument("--initial_step", type=int, default=None, help="Start counting at this step.")
    g.add_argument("--validation_seed", type=int, default=None, help="Seed for validation noise and timesteps.")
    g.add_argument("--validation_split", type=float, default=0.0, help="Fraction of images held out for validation.")
    g.add_argument("--validate_every_n_steps", type=int, default=None, help="Validate every N steps.")
    g.add_argument("--validate_every_n_epochs", type=int, default=None, help="Validate every N epochs.")
    g.add_argument("--max_validation_steps", type=int, default=None, help="Cap on validation batches.")
