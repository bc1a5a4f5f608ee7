"""Crash-safe file writes: write to a temporary name in the same folder, flush, fsync, rename.

A reader (or a resumed run) therefore sees either the old complete file or the new complete file,
never a half-written one under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TMP_MARK = ".tmp-"


def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file, imported on first use: the option checks import this module before torch."""
    from safetensors.torch import save_file as save

    save(tensors, filename, metadata=metadata)


def _umask_file_mode() -> int:
    current = os.umask(0)
    os.umask(current)
    return 0o666 & ~current


_DEFAULT_FILE_MODE = _umask_file_mode()
KILL_ENV = "ANIMA_TEST_KILL_AT"
_crash_points: Counter[str] = Counter()


def maybe_crash(label: str) -> None:
    """Test hook for the fault-injection test: `ANIMA_TEST_KILL_AT=<label>:<n>` SIGKILLs this process the n-th
    time it reaches `label`. Labels: "file-before-rename" (atomic_path/atomic_dir, data written and fsynced,
    not renamed), "state-after-accelerate" and "state-before-rename" (library.state.save_state). Unset: no-op."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    _crash_points[label] += 1
    if wanted == f"{label}:{_crash_points[label]}":
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed onto `path`."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_MARK}{final.name}.", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _DEFAULT_FILE_MODE)  # mkstemp makes 0600; a LoRA must be readable by e.g. ComfyUI's user
        maybe_crash("file-before-rename")
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_safetensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """safetensors' save_file, but crash-safe; tensors are made contiguous first."""
    contiguous = {key: value.detach().contiguous() for key, value in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata=metadata)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_MARK}{final.name}.", dir=final.parent))
    try:
        yield tmp
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                with open(Path(root) / name, "rb+") as handle:
                    os.fsync(handle.fileno())
        maybe_crash("file-before-rename")
        if final.exists():
            old = final.with_name(f"{TMP_MARK}old-{final.name}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
