"""Start-up checks of values and files that would otherwise pass and fail later, after the models have loaded.

Each check names the option or file and the fix: counts that must be positive (a zero rank, accumulation or step
count crashes mid-run or, worse, writes an untrained LoRA), and the files of a `--resume` folder, read only as far
as needed to know they are whole (a cut-off optimizer.bin would otherwise fail inside torch after the DiT loaded).
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path, PurePosixPath

from library.errors import ConfigError
from library.monitor.security import check_monitor_options
from library.weight_files import safetensors_problem, torch_archive_problem

# accelerate's save_state files (accelerate/utils/constants.py); all but model.safetensors are torch.save zips
STATE_MODEL = "model.safetensors"
STATE_ARCHIVES = ("optimizer.bin", "scheduler.bin")
STATE_RNG_GLOB = "random_states_*.pkl"
STATE_INFO = "train_state.json"  # library.state.TRAIN_STATE_FILE; read and checked there


def check_inputs(args: Namespace) -> None:
    """Every check of this module, in the order the options are read."""
    check_counts(args)
    check_output_name(args.output_name, args.output_dir)
    check_monitor_options(args)
    if args.resume:
        check_state_files(Path(args.resume))


def check_counts(args: Namespace) -> None:
    """Ranks, accumulation and the run's length: zero or negative values are refused with the option's name."""
    positive = [("--network_dim", args.network_dim, "the LoRA / LoKr rank, e.g. 16 (or leave it unset)"),
                ("--gradient_accumulation_steps", args.gradient_accumulation_steps, "1 for no accumulation"),
                ("--max_train_epochs", args.max_train_epochs, "a number of epochs, or leave it unset"),
                ("--logging_every_n_steps", args.logging_every_n_steps, "1 to read the loss every step")]
    if not args.max_train_epochs:  # --max_train_epochs replaces --max_train_steps (trainer._schedule)
        positive.append(("--max_train_steps", args.max_train_steps, "the number of optimizer steps, e.g. 1600"))
    for option, value, fix in positive:
        if value is not None and value < 1:
            raise ConfigError(f"{option} {value}: must be 1 or more; use {fix}.")
    if args.network_alpha is not None and args.network_alpha < 0:
        raise ConfigError(f"--network_alpha {args.network_alpha}: must not be negative (it would flip the sign of "
                          f"the update). Use a value up to --network_dim (e.g. 1 or the rank), or 0 for alpha = rank.")


def check_output_name(name: str | None, output_dir: str | None) -> None:
    """A base name, as kohya uses it: every file and state folder is named `<output_name>...` inside --output_dir,
    and the retention and newest-state searches look there only, so a name holding a folder cannot work."""
    if name and ("/" in name or "\\" in name):
        path = PurePosixPath(name.replace("\\", "/"))
        raise ConfigError(f"--output_name {name!r}: a name, not a path. Put the folders in --output_dir "
                          f"(--output_dir {PurePosixPath(output_dir or '.') / path.parent} --output_name {path.name}).")


def check_state_files(folder: Path) -> None:
    """The weights, optimizer and scheduler of a state folder are whole: headers and zip directories with their
    checksums, nothing unpickled. A folder that is no state at all is left to `state.read_train_state`, which says
    so."""
    if not (folder / STATE_INFO).is_file():
        return
    model = folder / STATE_MODEL
    if not model.is_file():
        raise ConfigError(f"--resume {folder}: {STATE_MODEL} is missing, so the network weights cannot be restored. "
                          f"Use another (the newest complete) state folder.")
    if problem := safetensors_problem(model):
        raise ConfigError(f"--resume {folder}: {model} is damaged ({problem}). Use another state folder.")
    for name in STATE_ARCHIVES:
        if not (folder / name).is_file():
            raise ConfigError(f"--resume {folder}: {name} is missing, so this state cannot be continued exactly. "
                              f"Use another state folder, or warm-start with --network_weights {model} (fresh "
                              f"optimizer and schedule).")
    for path in [folder / name for name in STATE_ARCHIVES] + sorted(folder.glob(STATE_RNG_GLOB)):
        if problem := torch_archive_problem(path):
            raise ConfigError(f"--resume {folder}: {path.name} is damaged ({problem}). Use another state folder, or "
                              f"warm-start with --network_weights {model} (fresh optimizer and schedule).")

