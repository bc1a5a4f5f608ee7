"""Every file a training run publishes appears under its final name by a rename only (issue 14 point 6).

An audit hook (PEP 578) records, during a real run that saves step LoRAs, step and final states, samples and the
loss curve, every open-for-write and every rename/replace. A reader of the output folder can then only ever see a
complete file: each final file (or the state folder holding it) is the destination of a rename, and no final name
is ever opened for writing.

Mutation this test catches (run once, it failed it): library/atomic.py `os.replace(tmp, final)` ->
`shutil.copyfile(tmp, final)` (a copy publishes a growing file under the final name).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from _tiny_run import tiny_model, train

from library.atomic import TMP_MARK

_recording: list[tuple[str, str, str]] | None = None
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Installed once per process (audit hooks cannot be removed); records only while a test asks it to."""
    if _recording is None:
        return
    if event == "open" and isinstance(args[0], str | os.PathLike):
        mode, flags = args[1], args[2]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
        if writes:
            _recording.append(("write", os.path.abspath(args[0]), ""))
    elif event == "os.rename":
        _recording.append(("rename", os.path.abspath(args[0]), os.path.abspath(args[1])))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def recorded_run(tiny: Path, out: Path, *options: str) -> list[tuple[str, str, str]]:
    global _recording
    _recording = []
    try:
        train(tiny, out, *options)
        return _recording
    finally:
        _recording = None


def test_every_published_file_appears_by_rename_and_no_final_name_is_written(tiny: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle --s 2 --w 64 --h 64\n", encoding="utf-8")
    out = tmp_path / "out"
    events = recorded_run(tiny, out, "--max_train_steps", "4", "--save_every_n_steps", "2", "--save_state",
                          "--sample_prompts", str(prompts), "--sample_every_n_steps", "2")

    published = [p for p in sorted(out.rglob("*")) if p.is_file()]
    assert not [p for p in published if TMP_MARK in str(p)], "temporary files left behind"
    kinds = {p.suffix for p in published}
    assert {".safetensors", ".png", ".csv", ".bin", ".json"} <= kinds, kinds
    assert any(p.parent.name.endswith("-state") for p in published)

    renamed_to = {Path(dst) for kind, _src, dst in events if kind == "rename" and TMP_MARK in _src}
    for path in published:
        chain = [path, *path.parents]
        assert any(p in renamed_to for p in chain[: chain.index(out)]), f"{path} never appeared by a rename"
    written = {Path(path) for kind, path, _ in events if kind == "write"}
    finals = set(published) | {p.parent for p in published if p.parent != out}
    assert not written & finals, f"opened for writing under a final name: {sorted(written & finals)}"
