"""kohya's sample-prompt files (`--sample_prompts`): `.txt`, `.toml` or `.json` -> a list of `SamplePrompt`.

The grammar is kohya's (`train_util.load_prompts` / `line_to_prompt_dict`, spec kohya-cli.md §6), so users'
existing files keep working:
- `.txt`: one prompt per line; blank lines and lines starting with `#` are skipped. Flags follow ` --`, their
  names case-insensitive: `--n` negative prompt, `--w` / `--h` size, `--d` seed, `--l` CFG scale, `--s` steps
  (clamped to 1..1000 as kohya does), `--fs` flow shift, `--ss` sampler. `--g`, `--cn`, `--ctr`, `--rcfg` are
  kohya flags for other models: accepted, with a warning that they do nothing.
- `.toml`: a `[prompt]` table of shared keys and `[[prompt.subset]]` entries merged over them.
- `.json`: a list whose items are dicts (kohya's keys) or strings (parsed like `.txt` lines).

Where kohya logs a bad flag and goes on, we log it with the line (or entry) number and skip that prompt, so
a typo never renders a silently different image. A missing or unreadable file is a `ConfigError`, found at
start-up by `validate_sample_prompts`, before any model loads.

Defaults are ComfyUI's reference settings for Anima (anima-model.md §8.2: 30 steps, CFG 4, shift 3, 1024²),
not kohya-Anima's preview defaults (512², CFG 7.5): samples should look like what users will get in ComfyUI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import toml

from library.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_SIZE = 1024
DEFAULT_STEPS = 30
DEFAULT_SCALE = 4.0
DEFAULT_FLOW_SHIFT = 3.0
MAX_STEPS = 1000


@dataclass(frozen=True)
class SamplePrompt:
    """One sample image to render; `seed` / `sampler` None mean "derive" / "use --sample_sampler"."""

    index: int
    prompt: str
    negative_prompt: str = ""
    width: int = DEFAULT_SIZE
    height: int = DEFAULT_SIZE
    seed: int | None = None
    steps: int = DEFAULT_STEPS
    scale: float = DEFAULT_SCALE
    flow_shift: float = DEFAULT_FLOW_SHIFT
    sampler: str | None = None


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _steps(text: str) -> int:
    return max(1, min(MAX_STEPS, int(text)))


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"{value} is not a positive number")
    return value


def _sampler(text: str) -> str:
    if not text.strip():
        raise ValueError("no sampler name")
    return text.strip().lower()


# dict key -> (SamplePrompt field, converter). The txt flags map onto these keys.
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "prompt": ("prompt", str),
    "negative_prompt": ("negative_prompt", str),
    "width": ("width", _positive_int),
    "height": ("height", _positive_int),
    "seed": ("seed", _non_negative_int),
    "sample_steps": ("steps", _steps),
    "scale": ("scale", float),
    "flow_shift": ("flow_shift", _positive_float),
    "sample_sampler": ("sampler", _sampler),
}
_FLAGS = {"n": "negative_prompt", "w": "width", "h": "height", "d": "seed", "s": "sample_steps", "l": "scale",
          "fs": "flow_shift", "ss": "sample_sampler"}
_OTHER_MODELS = {"g": "guidance_scale", "cn": "controlnet_image", "ctr": "cfg_trunc_ratio", "rcfg": "renorm_cfg"}


def _from_dict(entry: dict[str, Any], where: str) -> SamplePrompt:
    """kohya's prompt dict -> SamplePrompt; raises ValueError naming the bad key."""
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _OTHER_MODELS.values():
            logger.warning("%s: %r has no effect for this model; ignored", where, key)
            continue
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r} (known: {', '.join(_KEYS)})")
        if value is None:  # JSON null: not given
            continue
        name, convert = _KEYS[key]
        try:
            if isinstance(value, bool | dict | list):
                raise ValueError("expected a number or text")
            fields[name] = convert(str(value))
        except ValueError as error:
            raise ValueError(f"bad value {value!r} for {key!r}: {error}") from error
    if "prompt" not in fields:
        raise ValueError("no 'prompt'")
    return SamplePrompt(index=0, **fields)


def line_to_dict(line: str) -> dict[str, str]:
    """A txt line -> kohya's prompt dict; raises ValueError on an unknown or empty flag."""
    prompt, *flags = line.split(" --")
    entry = {"prompt": prompt.strip()}
    for flag in flags:
        name, _, value = flag.strip().partition(" ")
        name = name.lower()
        if name in _OTHER_MODELS:
            entry[_OTHER_MODELS[name]] = value
            continue
        if name not in _FLAGS:
            raise ValueError(f"unknown flag --{name} (known: {', '.join('--' + f for f in _FLAGS)})")
        if not value.strip() and name != "n":
            raise ValueError(f"--{name} has no value")
        entry[_FLAGS[name]] = value.strip()
    return entry


def _read(path: Path) -> list[tuple[str, str | dict[str, Any]]]:
    """The file's raw entries as (where, line or dict); structural problems raise ConfigError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--sample_prompts {path}: cannot read the file ({error}).") from error
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [(f"{path}:{number}", line.strip()) for number, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.strip().startswith("#")]
    if suffix == ".toml":
        try:
            table = toml.loads(text).get("prompt")
        except toml.TomlDecodeError as error:
            raise ConfigError(f"--sample_prompts {path}: not valid TOML ({error}).") from error
        if not isinstance(table, dict) or not isinstance(table.get("subset"), list):
            raise ConfigError(f"--sample_prompts {path}: expected a [prompt] table with [[prompt.subset]] entries.")
        shared = {key: value for key, value in table.items() if key != "subset"}
        return [(f"{path}: subset {number}", {**shared, **subset}) for number, subset in enumerate(table["subset"], 1)]
    if suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--sample_prompts {path}: not valid JSON ({error}).") from error
        if not isinstance(items, list):
            raise ConfigError(f"--sample_prompts {path}: expected a JSON list of prompt dicts or strings.")
        return [(f"{path}: item {number}", item) for number, item in enumerate(items, 1)]
    raise ConfigError(f"--sample_prompts {path}: unknown file type {suffix!r}; use .txt, .toml or .json.")


def load_sample_prompts(path: str | Path) -> list[SamplePrompt]:
    """Every usable prompt, numbered from 0 in file order; bad entries are logged with their place and skipped."""
    target = Path(path)
    if not target.is_file():
        raise ConfigError(f"--sample_prompts {path}: no such file.")
    prompts: list[SamplePrompt] = []
    for where, raw in _read(target):
        try:
            if isinstance(raw, str):
                entry: dict[str, Any] = line_to_dict(raw)
            elif isinstance(raw, dict):
                entry = raw
            else:
                raise ValueError(f"expected a dict or a string, got {type(raw).__name__}")
            prompt = _from_dict(entry, where)
        except ValueError as error:
            logger.warning("%s: %s; this prompt is skipped", where, error)
            continue
        prompts.append(replace(prompt, index=len(prompts)))
    return prompts


def validate_sample_prompts(path: str | Path, sampler_names: Collection[str] | None = None) -> list[SamplePrompt]:
    """Start-up check: the file reads, holds at least one prompt, and (if given) names only known samplers."""
    prompts = load_sample_prompts(path)
    if not prompts:
        raise ConfigError(f"--sample_prompts {path}: no usable prompt in the file (see the warnings above).")
    if sampler_names is not None:
        known = {name.lower() for name in sampler_names}
        for prompt in prompts:
            if prompt.sampler is not None and prompt.sampler not in known:
                raise ConfigError(f"--sample_prompts {path}: prompt {prompt.index} asks for sampler "
                                  f"{prompt.sampler!r}; known samplers: {', '.join(sorted(known))}.")
    return prompts
