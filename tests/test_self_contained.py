"""The suite needs nothing beside the repository (issue 15 point 2): the guard in conftest.py fails a test that
opens a file outside it.

Mutation this test catches (run once, it failed it): tests/_repo_guard.py `self.seen.append(...)` removed (the
guard records nothing); and the guard itself caught tests/test_qwen3_loading.py reading `../shared/fixtures/`.
"""

from __future__ import annotations

import os
from pathlib import Path

from _repo_guard import REPO, RepoGuard


def test_a_file_outside_the_repository_is_recorded_and_one_inside_is_not(repo_guard: RepoGuard,
                                                                           tmp_path: Path) -> None:
    repo_guard.take()
    (REPO / "README.md").read_text(encoding="utf-8")
    (tmp_path / "inside.txt").write_text("ok", encoding="utf-8")
    assert repo_guard.take() == []
    fd = os.open("/", os.O_RDONLY)  # the file system's root: outside everything, on every machine
    os.close(fd)
    assert repo_guard.take() == ["/"]


def test_the_folder_beside_the_repository_is_outside(repo_guard: RepoGuard) -> None:
    assert repo_guard.is_outside(REPO.parent / "shared" / "fixtures" / "comfy_conditioning")
    assert not repo_guard.is_outside(REPO / "tests" / "fixtures" / "comfy_conditioning")


def test_every_test_data_path_is_inside_the_repository() -> None:
    """No test source names the folder beside the repository."""
    beside = '.parent / "shared"'
    offenders = [p.name for p in (REPO / "tests").glob("*.py") if p.name != Path(__file__).name
                 and beside in p.read_text(encoding="utf-8")]
    assert offenders == []
