"""Shared test settings: one torch thread per test process, and no test touches files outside the repository.

The suite runs two pytest workers on two cores; letting each use every core oversubscribes the CPU and
made single files 10x slower.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator

import pytest
import torch
from _repo_guard import RepoGuard

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_guard(tmp_path_factory: pytest.TempPathFactory) -> RepoGuard:
    """Temporary files go under this session's pytest folder, so that folder is the only one allowed beside the
    repository (a clone inside /tmp must not make all of /tmp readable)."""
    temp_root = tmp_path_factory.getbasetemp()
    scratch = temp_root / "tmp"
    scratch.mkdir(exist_ok=True)
    tempfile.tempdir = str(scratch)
    os.environ["TMPDIR"] = str(scratch)
    guard = RepoGuard(temp_root)
    sys.addaudithook(guard.audit)
    return guard


@pytest.fixture(autouse=True)
def _files_stay_in_the_repository(repo_guard: RepoGuard) -> Iterator[None]:
    repo_guard.armed = True
    yield
    repo_guard.armed = False
    if outside := repo_guard.take():
        pytest.fail("the test opened files outside the repository and its temporary folders: "
                    f"{sorted(set(outside))[:10]}. Put test data under tests/fixtures/.")
