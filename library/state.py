"""Resumable state folders (kohya's names) written through accelerate's save_state.

A state folder is complete or absent: every process writes into `<final>.tmp-partial` (a name all
ranks agree on), then the main process adds `train_state.json` last and renames the folder into place.
`train_state.json` also records what the state was trained with (the network options, the base model file's
fingerprint), so `--resume` with another network or model fails at start instead of deep inside torch or,
worse, silently training the LoRA against other weights.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from library.atomic import TMP_MARK, maybe_crash, write_text_atomic
from library.errors import ConfigError
from library.file_fingerprint import same_file_contents
from library.foreign_state import refuse_foreign_state
from library.launch_command import launch_prefix
from library.text_encoder_lora import DIT_ONLY

TRAIN_STATE_FILE = "train_state.json"
PARTIAL_SUFFIX = ".tmp-partial"


@dataclass
class TrainState:
    """Where a run stands: 1-based epoch in progress, optimizer steps done, batches done in this epoch; the network
    options and the base model files ({role: fingerprint}) it was trained with."""

    current_epoch: int
    current_step: int
    batches_done_in_epoch: int
    identity: dict[str, Any] = field(default_factory=dict)
    base_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_processes: int = 0  # 0: written before states recorded it
    launcher: list[str] = field(default_factory=list)  # what went before the script (library/launch_command.py)


def step_state_name(output_name: str, step: int) -> str:
    return f"{output_name}-step{step:08d}-state"


def epoch_state_name(output_name: str, epoch: int) -> str:
    return f"{output_name}-{epoch:06d}-state"


def final_state_name(output_name: str) -> str:
    return f"{output_name}-state"


def save_state(accelerator: Any, folder: Path, state: TrainState) -> None:
    """Call on every process: accelerate writes weights, optimizer, scheduler and each rank's RNG."""
    partial = folder.with_name(folder.name + PARTIAL_SUFFIX)
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            maybe_crash("state-after-accelerate")
            write_text_atomic(partial / TRAIN_STATE_FILE, json.dumps(asdict(state), indent=2))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk must not leave half a state behind
        raise
    if accelerator.is_main_process:
        maybe_crash("state-before-rename")
        if folder.exists():
            old = folder.with_name(folder.name + ".tmp-old")
            os.replace(folder, old)
            os.replace(partial, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, folder)
    accelerator.wait_for_everyone()


def read_train_state(folder: str | os.PathLike) -> TrainState:
    """Read and check a state folder before any model loads; errors say what to pass instead."""
    path = Path(folder)
    if path.is_file():
        inside = path.parent if (path.parent / TRAIN_STATE_FILE).is_file() else None
        fix = (f"This file is inside one: pass --resume {inside}" if inside else
               f"A LoRA / LoKr file goes to --network_weights {folder} (its weights, with a fresh optimizer and "
               f"schedule)")
        raise ConfigError(f"--resume {folder}: this is a file; --resume takes a state folder (written by --save_state, "
                          f"named like <output_name>-step00000010-state). {fix}.")
    if not path.is_dir():
        raise ConfigError(f"--resume {folder}: no such folder. Pass a state folder written by --save_state "
                          f"(named like <output_name>-step00000010-state).")
    if TMP_MARK in path.name:
        raise ConfigError(f"--resume {folder}: this is an unfinished save (its name contains {TMP_MARK!r}); "
                          f"it may be incomplete. Use the newest folder without {TMP_MARK!r} in its name.")
    info = path / TRAIN_STATE_FILE
    if not info.is_file():
        raise ConfigError(f"--resume {folder}: {TRAIN_STATE_FILE} is missing, so this is not a complete state "
                          f"folder. Use the newest folder that has it.")
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        refuse_foreign_state(path, data)  # kohya's (or another trainer's) state: refused, naming its LoRA file
        return TrainState(
            current_epoch=int(data["current_epoch"]),
            current_step=int(data["current_step"]),
            batches_done_in_epoch=int(data.get("batches_done_in_epoch", 0)),
            identity=_with_trained_parts(dict(data.get("identity", {}))),
            base_model=dict(data.get("base_model", {})),
            num_processes=int(data.get("num_processes", 0)),
            launcher=[str(item) for item in data.get("launcher", [])],
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise ConfigError(f"--resume {folder}: {info} is damaged ({type(error).__name__}: {error}), so where the run "
                          f"stopped is unknown. Use another (the newest complete) state folder.") from None


def _with_trained_parts(identity: dict[str, Any]) -> dict[str, Any]:
    """States from before text-encoder LoRAs record no `trained_parts`: they trained the DiT alone."""
    return identity | {"trained_parts": identity.get("trained_parts", DIT_ONLY)} if identity else identity


def check_process_count(folder: str, state: TrainState, current: int) -> None:
    """A state continues only with the process count that wrote it: each process's place in the data and its RNG
    are its own, and the steps per epoch follow the count, so another count would silently train other data."""
    if not state.num_processes or state.num_processes == current:
        return
    raise ConfigError(
        f"--resume {folder} was written by {state.num_processes} process(es), but this run has {current}. A state "
        f"continues only with the process count that wrote it. Launch it as it was launched:\n  "
        f"{resume_command(Path(folder), state.launcher or None)}\nTo go on with {current} instead (a warm start: fresh "
        f"optimizer and schedule, step 1), drop --resume and pass --network_weights {Path(folder) / 'model.safetensors'}.")


def check_identity(folder: str, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """A state only resumes into the same network and model; name each difference and the fix."""
    diffs = [f"{key}: state has {saved[key]!r}, this run has {current.get(key)!r}"
             for key in sorted(saved) if key in current and saved[key] != current[key]]
    if diffs:
        raise ConfigError(f"--resume {folder} was written by a different setup:\n  " + "\n  ".join(diffs)
                          + "\nRun with the same options, or use --network_weights to warm-start from the LoRA "
                            "file instead (fresh optimizer and schedule).")


def check_base_model(folder: str, saved: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> str | None:
    """A state only continues on the model files it was trained on (compared by contents, not by name). Returns a
    warning for a state from before this record, which cannot be checked."""
    if not saved:
        return (f"--resume {folder}: this state was written before states recorded their base model, so it cannot "
                f"be checked that this run loads the same DiT; resuming anyway. Make sure it is the same file.")
    for role, now in current.items():
        then = saved.get(role)
        if then is not None and not same_file_contents(then, now):
            raise ConfigError(
                f"--resume {folder} was trained on the {role} {then.get('file')} ({then.get('bytes')} bytes), but this "
                f"run loads the {role} {now['file']} ({now['bytes']} bytes), whose contents differ. A state continues "
                f"only on the model it was trained on. To train on from its LoRA with this {role} instead (a warm "
                f"start: fresh optimizer and schedule, step 1), drop --resume and pass --network_weights "
                f"{Path(folder) / 'model.safetensors'} (or the LoRA file saved with that state).")
    return None


def newest_state(output_dir: Path, output_name: str) -> Path | None:
    """The complete state folder with the most steps; at equal steps the end-of-training state, which was written
    last (unfinished `.tmp-` saves are never candidates)."""
    final = final_state_name(output_name)
    found = []
    for path in output_dir.glob(f"{output_name}*-state"):
        if TMP_MARK in path.name or not (path / TRAIN_STATE_FILE).is_file():
            continue
        try:
            found.append((read_train_state(path).current_step, path.name == final, path.name, path))
        except ConfigError:
            continue  # a damaged train_state.json is no place to resume from
    return max(found)[-1] if found else None


def nothing_left_message(folder: str, step: int, max_train_steps: int) -> str:
    """Said instead of training when a resumed state already reached --max_train_steps (nothing is written)."""
    return (f"--resume {folder}: this state is at step {step}, which already reaches --max_train_steps "
            f"{max_train_steps}, so there is nothing left to train. Stopped without writing any file (the LoRA and "
            f"the loss log are untouched). To train longer, raise --max_train_steps (or --max_train_epochs) and "
            f"resume again.")


def prune_states(output_dir: Path, names: list[str]) -> None:
    for name in names:
        shutil.rmtree(output_dir / name, ignore_errors=True)


def resume_command(state_dir: Path, prefix: list[str] | None = None) -> str:
    """This run's own command line, launched as this run was (or by `prefix`: a launcher and its options), with
    `--resume <state_dir>` in place of any earlier --resume."""
    argv = list(sys.argv)
    cleaned: list[str] = []
    skip_next = False
    for item in argv[1:]:
        if skip_next:
            skip_next = False
            continue
        if item == "--resume":
            skip_next = True
            continue
        if item.startswith("--resume="):
            continue
        cleaned.append(item)
    launch = launch_prefix() if prefix is None else prefix
    return " ".join(shlex.quote(a) for a in [*launch, argv[0], *cleaned, "--resume", str(state_dir)])
