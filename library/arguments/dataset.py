"""Dataset options: command-line fallbacks for dataset.toml (kohya `add_dataset_arguments`, dataset-config.md).

With `--dataset_config` the folder options are ignored and the others are defaults for the TOML's entries.
"""

from __future__ import annotations

import argparse

_INTERPOLATIONS = ["lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("dataset (fallbacks for dataset.toml)")
    g.add_argument(
        "--train_data_dir",
        type=str,
        default=None,
        help="DreamBooth-style folder of `N_name` subfolders (ignored with --dataset_config).",
    )
    g.add_argument(
        "--reg_data_dir", type=str, default=None, help="Same for regularisation images (ignored with --dataset_config)."
    )
    g.add_argument(
        "--in_json", type=str, default=None, help="Fine-tuning metadata JSON (ignored with --dataset_config)."
    )
    g.add_argument("--dataset_repeats", type=int, default=1, help="Default num_repeats for fine-tuning datasets.")
    g.add_argument(
        "--cache_info", action="store_true", help="Cache caption and image size in metadata_cache.json (DreamBooth)."
    )
    g.add_argument("--shuffle_caption", action="store_true", help="Shuffle the separated tags of each caption.")
    g.add_argument("--caption_separator", type=str, default=",", help="Separator between caption tags.")
    g.add_argument("--caption_extension", type=str, default=".caption", help="Caption file extension.")
    g.add_argument(
        "--caption_extention", type=str, default=None, help="Misspelt legacy alias of --caption_extension (kohya)."
    )
    g.add_argument(
        "--keep_tokens", type=int, default=0, help="Keep the first N tags in place when shuffling or dropping."
    )
    g.add_argument(
        "--keep_tokens_separator",
        type=str,
        default="",
        help="Marks the end of the fixed part of a caption (e.g. |||), instead of --keep_tokens.",
    )
    g.add_argument(
        "--secondary_separator",
        type=str,
        default=None,
        help="Separator inside a tag group; replaced by --caption_separator after shuffling.",
    )
    g.add_argument("--enable_wildcard", action="store_true", help="Enable {a|b} wildcards and multi-line captions.")
    g.add_argument("--caption_prefix", type=str, default=None, help="Text put before every caption (with a space).")
    g.add_argument("--caption_suffix", type=str, default=None, help="Text put after every caption (with a space).")
    g.add_argument(
        "--color_aug", action="store_true", help="Random hue/gamma jitter (not compatible with latent caching)."
    )
    g.add_argument("--flip_aug", action="store_true", help="Flip images horizontally with probability 0.5.")
    g.add_argument(
        "--face_crop_aug_range",
        type=str,
        default=None,
        help="Face-centred crop scale range 'lo,hi' (needs face info in file names).",
    )
    g.add_argument(
        "--random_crop", action="store_true", help="Random instead of centre crop (not compatible with latent caching)."
    )
    g.add_argument("--debug_dataset", action="store_true", help="Show the dataset's batches and stop without training.")
    g.add_argument("--resolution", type=str, default=None, help="Base training resolution: 'N' or 'W,H'.")
    g.add_argument("--cache_latents", action="store_true", help="Encode images once and keep the latents (in RAM).")
    g.add_argument(
        "--cache_latents_to_disk",
        action="store_true",
        help="Cache latents in files next to the images (implies --cache_latents).",
    )
    g.add_argument("--skip_cache_check", action="store_true", help="Trust existing cache files without opening them.")
    g.add_argument("--enable_bucket", action="store_true", help="Aspect-ratio bucketing.")
    g.add_argument("--min_bucket_reso", type=int, default=256, help="Smallest bucket side in pixels.")
    g.add_argument("--max_bucket_reso", type=int, default=1024, help="Largest bucket side in pixels.")
    g.add_argument(
        "--bucket_reso_steps", type=int, default=64, help="Bucket side granularity (Anima: a multiple of 16)."
    )
    g.add_argument(
        "--bucket_no_upscale", action="store_true", help="Never upscale images; buckets follow the image size."
    )
    g.add_argument(
        "--resize_interpolation",
        type=str,
        default=None,
        choices=_INTERPOLATIONS,
        help="Resize filter (default: area when shrinking, lanczos when enlarging).",
    )
    g.add_argument("--token_warmup_min", type=int, default=1, help="Tag-count warmup: number of tags at the start.")
    g.add_argument(
        "--token_warmup_step",
        type=float,
        default=0,
        help="Tag-count warmup length in steps (a value < 1 is a fraction of the training steps).",
    )
    g.add_argument("--alpha_mask", action="store_true", help="Use the image's alpha channel as a loss mask.")
    g.add_argument("--dataset_class", type=str, default=None, help="A custom dataset class as package.module.Class.")
    g.add_argument("--caption_dropout_rate", type=float, default=0.0, help="Probability of dropping the whole caption.")
    g.add_argument("--caption_dropout_every_n_epochs", type=int, default=0, help="Drop all captions every N epochs.")
    g.add_argument("--caption_tag_dropout_rate", type=float, default=0.0, help="Probability of dropping each tag.")
    g.add_argument("--conditioning_data_dir", type=str, default=None, help="Folder of mask images for masked loss.")
    g.add_argument(
        "--masked_loss", action="store_true", help="Weight the loss by a mask (alpha channel or conditioning images)."
    )
