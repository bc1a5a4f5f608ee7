"""State folders that other trainers wrote: recognised at `--resume` and refused before training, with the file
that carries their LoRA over (`--network_weights`).

kohya sd-scripts writes its states with accelerate's `save_state` (`model.safetensors`, `optimizer.bin`,
`scheduler.bin`, `random_states_0.pkl`) and adds a `train_state.json` holding only `current_epoch` and `current_step`
(kohya-cli.md §5.1); FHfanshu sd-scripts-anima adds `resume_snapshot.json`. Our states record what they were trained
with (`identity`) and where in the epoch they stopped, so a `train_state.json` without both was not written here. Such a state cannot be continued exactly:
its `optimizer.bin` holds the moments by position in that trainer's parameter order and groups (kohya: text encoder
first, `lora`/`plus` groups, its own default targets), and its data order, RNG and step arithmetic are its own
(kohya-cli.md §5.3), so nothing here would replay the run it stopped. Its network weights carry over whole:
`--network_weights` reads kohya's `lora_unet_` / `lora_te_` keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from library.errors import ConfigError
from library.weight_files import read_safetensors_header

ACCELERATE_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl")
OUR_KEYS = {"identity", "batches_done_in_epoch"}  # every state this trainer wrote has one of them; kohya's has neither
SEED_PROJECT_MARK = "resume_snapshot.json"  # FHfanshu sd-scripts-anima's resume record (kohya-cli.md §5.4)


def refuse_foreign_state(folder: Path, data: dict[str, Any]) -> None:
    """Called with a state folder's parsed `train_state.json`; returns when this trainer wrote it (or when the file
    is no complete record at all: the caller reports it damaged)."""
    if not isinstance(data, dict) or OUR_KEYS & set(data) or "current_step" not in data:
        return
    kind = state_kind(folder)
    present = [name for name in (*ACCELERATE_FILES, "train_state.json", SEED_PROJECT_MARK) if (folder / name).is_file()]
    weights = lora_file(folder)
    offer = (f"pass --network_weights {weights} instead of --resume" if weights else
             "pass the LoRA file saved with that state to --network_weights instead of --resume")
    raise ConfigError(
        f"--resume {folder}: this is {kind} (accelerate's save_state: {', '.join(present)}; its train_state.json "
        f"records only the epoch and step, at step {data['current_step']}), not a state of this trainer. It cannot be continued exactly: its optimizer.bin holds the "
        f"optimizer moments by position in that trainer's own parameter order and groups, and its data order and "
        f"random state are that trainer's, so no step would replay. Its LoRA carries over: {offer} (a warm start: "
        f"fresh optimizer and schedule from step 1; set --max_train_steps to the steps that were left).")


def state_kind(folder: Path) -> str:
    """Which trainer wrote the folder, in words, from the files it leaves."""
    if (folder / SEED_PROJECT_MARK).is_file():
        return "a state folder of FHfanshu sd-scripts-anima"
    names = _tensor_names(folder / "model.safetensors")
    if any(name.startswith(("lora_unet_", "lora_te_", "lora_te1_")) for name in names):
        return "a kohya sd-scripts state folder"
    return "a state folder of another trainer"


def lora_file(folder: Path) -> Path | None:
    """The file whose weights carry over: the state's `model.safetensors` when it holds adapter tensors, else the
    LoRA saved beside the state under kohya's names (`<name>-step00000100-state` -> `<name>-step00000100.safetensors`;
    FHfanshu's states keep no adapter tensors in model.safetensors)."""
    model = folder / "model.safetensors"
    if _tensor_names(model):
        return model
    beside = folder.parent / (folder.name.removesuffix("-state") + ".safetensors")
    return beside if beside.is_file() else None


def _tensor_names(path: Path) -> list[str]:
    try:
        return list(read_safetensors_header(path))
    except (OSError, ValueError):
        return []
