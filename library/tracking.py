"""Trackers (TensorBoard, wandb): kohya's run folders and option checks, and what each step sends to them.

The checks run before any model loads, so a missing package or folder fails in the first second instead of
after minutes of loading. `StepLogger` is the loop's only contact with the trackers: scalars every step, a
histogram of the sigmas drawn since the last one, and sample images after sampling.
"""

from __future__ import annotations

import logging
import os
import time
from argparse import Namespace
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import toml
from PIL import Image

from library.errors import ConfigError
from library.seed_alerts import validate_seed_alerts

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_TRACKER_NAME = "network_train"
HISTOGRAM_BINS = np.linspace(0.0, 1.0, 51)  # sigma lies in [0, 1]; fixed bins make steps comparable
_SECRET_KEYS = {"wandb_api_key", "huggingface_token"}
_PATH_KEYS = {"pretrained_model_name_or_path", "vae", "tokenizer_cache_dir", "train_data_dir",
              "conditioning_data_dir", "reg_data_dir", "output_dir", "logging_dir"}


def _wandb_installed() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def log_with(args: Namespace) -> list[str] | None:
    """The tracker names for `Accelerator(log_with=...)`: kohya's rules (TensorBoard when only --logging_dir is
    set; `all` = TensorBoard plus wandb when it is installed)."""
    if not args.log_with:
        return ["tensorboard"] if args.logging_dir else None
    if args.log_with == "all":
        return ["tensorboard", "wandb"] if _wandb_installed() else ["tensorboard"]
    return [args.log_with]


def validate_tracking(args: Namespace) -> None:
    """Every logging option problem, before anything loads."""
    if args.log_with in ("tensorboard", "all") and not args.logging_dir:
        raise ConfigError(f"--log_with {args.log_with} needs --logging_dir (the folder for the logs), "
                          f"e.g. --logging_dir logs.")
    if args.log_with == "wandb" and not _wandb_installed():
        raise ConfigError("--log_with wandb: the wandb package is not installed. Install it with `pip install wandb` "
                          "(then `wandb login`), or use --log_with tensorboard --logging_dir logs.")
    if args.log_with == "all" and not _wandb_installed():
        logger.warning("--log_with all: wandb is not installed, logging to TensorBoard only (pip install wandb).")
    if args.log_tracker_config:
        _read_tracker_config(args.log_tracker_config)
    validate_seed_alerts(args)


def _read_tracker_config(path: str) -> dict[str, Any]:
    try:
        return toml.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise ConfigError(f"--log_tracker_config {path}: no such file. Fix the path or drop the option.") from exc
    except (toml.TomlDecodeError, OSError) as exc:
        raise ConfigError(f"--log_tracker_config {path}: not a readable TOML file ({exc}). It holds one table per "
                          f"tracker, e.g. [wandb] with tags = [\"a\"].") from exc


def run_log_dir(args: Namespace, now: float | None = None) -> Path | None:
    """kohya's run folder: `<logging_dir>/<log_prefix><YYYYmmddHHMMSS>`, so every run (and every resume) gets
    its own folder and TensorBoard lists them side by side."""
    if not args.logging_dir:
        return None
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(time.time() if now is None else now))
    return Path(args.logging_dir) / f"{args.log_prefix or ''}{stamp}"


def sanitized_config(args: Namespace) -> dict[str, Any]:
    """The arguments as trackers accept them (scalars; the rest as text), without secrets or local paths: a run
    shared on wandb must not leak an API key or the user's folder layout."""
    config: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key.startswith("_") or key in _SECRET_KEYS or key in _PATH_KEYS or value is None:
            continue
        if isinstance(value, str) and ("/" in value or "\\" in value):
            continue
        config[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return config


def init_trackers(accelerator: Any, args: Namespace, now: float | None = None) -> Path | None:
    """Start the trackers in the run folder (main process only, as accelerate does); returns the folder."""
    run_dir = run_log_dir(args, now)
    if not accelerator.is_main_process or not log_with(args):
        return run_dir
    if run_dir is not None:
        accelerator.project_configuration.logging_dir = str(run_dir)
    init_kwargs = _read_tracker_config(args.log_tracker_config) if args.log_tracker_config else {}
    if args.wandb_run_name:
        init_kwargs.setdefault("wandb", {}).setdefault("name", args.wandb_run_name)
    if "wandb" in (log_with(args) or []):
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("WANDB_DIR", str(run_dir))
        if args.wandb_api_key:
            import wandb

            wandb.login(key=args.wandb_api_key)
    accelerator.init_trackers(args.log_tracker_name or DEFAULT_TRACKER_NAME,
                              config=sanitized_config(args) if args.log_config else None, init_kwargs=init_kwargs)
    return run_dir


class StepLogger:
    """Sends each optimizer step's values to the trackers; a no-op when there are none (or off the main
    process), so the loop can call it unconditionally."""

    def __init__(self, accelerator: Any, lr_descriptions: Sequence[str], alerts: Any = None,
                 histogram_every: int = 10) -> None:
        self.acc, self.lr_descriptions, self.histogram_every = accelerator, list(lr_descriptions), histogram_every
        self.alerts = alerts  # library/seed_alerts.py: checked on every process, trackers or not
        self._sigmas: list[torch.Tensor] = []  # on the device until the histogram reads them all at once

    @property
    def active(self) -> bool:
        return bool(self.acc.trackers)

    def add_sigmas(self, sigmas: torch.Tensor) -> None:
        """Collect the sigmas (timesteps in [0, 1]) one micro-batch drew; they go out with the next histogram."""
        if self.active:
            self._sigmas.append(sigmas.detach().float().flatten())

    def log(self, step: int, loss: float, average: float, lrs: Sequence[float],
            param_groups: Sequence[dict[str, Any]] = ()) -> None:
        """kohya's step keys: `loss/current`, `loss/average`, `lr/<group>`, and `lr/d*lr/<group>` for optimizers
        that adapt a step size `d` (Prodigy, D-Adaptation); the sigma histogram every `histogram_every` steps; the
        seed alerts' `gpu/*` and `alert/*` scalars."""
        extra = self.alerts.step(step, loss) if self.alerts is not None else {}
        if not self.active:
            return
        logs: dict[str, float] = {"loss/current": loss, "loss/average": average, **extra}
        for name, lr, group in zip(self.lr_descriptions, lrs, _padded(param_groups, len(lrs)), strict=False):
            logs[f"lr/{name}"] = lr
            if group is not None and "d" in group:
                logs[f"lr/d*lr/{name}"] = float(group["d"]) * float(group["lr"])
        self.acc.log(logs, step=step)
        if self._sigmas and step % self.histogram_every == 0:
            import torch  # at run time only: this module is read before torch loads

            self._log_histogram(step, torch.cat(self._sigmas).cpu().numpy())
            self._sigmas = []

    def _log_histogram(self, step: int, values: np.ndarray) -> None:
        for tracker in self.acc.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_histogram("timesteps", values, step, bins=HISTOGRAM_BINS)
            elif tracker.name == "wandb":
                import wandb

                tracker.log({"timesteps": wandb.Histogram(values)}, step=step)

    def log_samples(self, step: int, images: Iterable[Image.Image | str | os.PathLike]) -> None:
        """Sample images as `sample_<index>` (index = position in the prompt file's rendered list)."""
        if not self.active:
            return
        for index, item in enumerate(images):
            image = _rgb(item)
            for tracker in self.acc.trackers:
                if tracker.name == "tensorboard":
                    tracker.writer.add_image(f"sample_{index}", np.asarray(image), step, dataformats="HWC")
                elif tracker.name == "wandb":
                    import wandb

                    tracker.log({f"sample_{index}": wandb.Image(image)}, step=step)


def _rgb(item: Image.Image | str | os.PathLike) -> Image.Image:
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    with Image.open(item) as image:
        return image.convert("RGB")


def _padded(groups: Sequence[dict[str, Any]], length: int) -> list[dict[str, Any] | None]:
    return [*groups, *([None] * max(0, length - len(groups)))]
