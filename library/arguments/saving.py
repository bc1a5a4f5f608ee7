"""Output, saving, resuming and Hugging Face upload options (part of kohya `add_training_arguments`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output, saving and resuming")
    g.add_argument("--output_dir", type=str, default=None, help="Folder for the trained files.")
    g.add_argument("--output_name", type=str, default=None, help="Base name of the trained files (without extension or folders: those go in --output_dir).")
    g.add_argument(
        "--save_precision",
        type=str,
        default=None,
        choices=[None, "float", "fp16", "bf16"],
        help="dtype of the saved weights (default: as trained).",
    )
    g.add_argument("--save_every_n_epochs", type=int, default=None, help="Save every N epochs.")
    g.add_argument("--save_every_n_steps", type=int, default=None, help="Save every N steps.")
    g.add_argument(
        "--save_n_epoch_ratio",
        type=int,
        default=None,
        help="Save about N times over the run (sets --save_every_n_epochs).",
    )
    g.add_argument("--save_last_n_epochs", type=int, default=None, help="Keep only the last N epoch files.")
    g.add_argument(
        "--save_last_n_epochs_state", type=int, default=None, help="Keep only the last N epoch state folders."
    )
    g.add_argument("--save_last_n_steps", type=int, default=None, help="Keep only step files from the last N steps.")
    g.add_argument(
        "--save_last_n_steps_state", type=int, default=None, help="Keep only step state folders from the last N steps."
    )
    g.add_argument(
        "--save_state", action="store_true", help="Write a resumable state folder with every save and at the end."
    )
    g.add_argument("--save_state_on_train_end", action="store_true", help="Write a state folder only at the end.")
    g.add_argument("--resume", type=str, default=None, help="State folder to resume from.")
    g.add_argument("--huggingface_repo_id", type=str, default=None, help="Hugging Face repo to upload to.")
    g.add_argument("--huggingface_repo_type", type=str, default=None, help="Type of that repo (model, dataset...).")
    g.add_argument("--huggingface_path_in_repo", type=str, default=None, help="Folder inside that repo.")
    g.add_argument("--huggingface_token", type=str, default=None, help="Hugging Face token for the upload.")
    g.add_argument("--huggingface_repo_visibility", type=str, default=None, help="public or private, for a new repo.")
    g.add_argument("--save_state_to_huggingface", action="store_true", help="Upload state folders too.")
    g.add_argument(
        "--resume_from_huggingface",
        action="store_true",
        help="--resume is repo_id/path_in_repo[:revision[:repo_type]] on Hugging Face.",
    )
    g.add_argument("--async_upload", action="store_true", help="Upload without waiting.")
