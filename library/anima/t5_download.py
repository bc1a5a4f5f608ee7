"""Complete a user's T5 tokenizer folder by download (only with `--auto_download_t5_tokenizer`).

We bundle the T5 tokenizer, so no run needs this; it exists for users who point `--t5_tokenizer_dir` at a folder
of their own that lacks files. Hugging Face is tried first (the subfolder, then the repo root), then ModelScope,
which is reachable where the hub is not. `modelscope` is imported only when that fallback runs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from library.atomic import atomic_path
from library.errors import ModelFileError

logger = logging.getLogger(__name__)

DEFAULT_REPO_ID = "google/t5-v1_1-base"
DEFAULT_SUBFOLDER = "tokenizer"
DEFAULT_MODELSCOPE_REPO_ID = "nv-community/Cosmos-Predict2-2B-Text2Image"
DEFAULT_MODELSCOPE_REVISION = "master"
DEFAULT_MODELSCOPE_SUBFOLDER = "tokenizer"


def parse_hf_location(repo_id: str, subfolder: str) -> tuple[str, str | None, str]:
    """Accept `owner/name` or a URL `https://huggingface.co/owner/name/tree/<revision>/<subfolder>`."""
    prefix = "https://huggingface.co/"
    if not repo_id.startswith(prefix):
        return repo_id, None, subfolder
    parts = repo_id[len(prefix) :].strip("/").split("/")
    if len(parts) >= 4 and parts[2] == "tree":
        return "/".join(parts[:2]), parts[3], "/".join(parts[4:]) or subfolder
    return "/".join(parts[:2]), None, subfolder


def _copy_into(source: str | Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _from_hugging_face(filename: str, repo_id: str, revision: str | None, subfolder: str) -> str:
    from huggingface_hub import hf_hub_download

    errors = []
    for folder in dict.fromkeys([subfolder, ""]):
        try:
            return hf_hub_download(repo_id, filename, subfolder=folder or None, revision=revision)
        except Exception as err:  # every hub failure means "try the next place"
            errors.append(f"{repo_id}/{folder}: {err}")
    raise OSError("; ".join(errors))


def _from_modelscope(filename: str, repo_id: str, revision: str, subfolder: str) -> str:
    try:
        from modelscope.hub.file_download import model_file_download
    except ImportError as err:
        raise OSError("the ModelScope fallback needs `pip install modelscope`") from err
    path = f"{subfolder.strip('/')}/{filename}" if subfolder.strip("/") else filename
    return model_file_download(repo_id, path, revision=revision)


def download_t5_tokenizer_files(
    target_dir: str | Path,
    filenames: list[str],
    *,
    repo_id: str = DEFAULT_REPO_ID,
    subfolder: str = DEFAULT_SUBFOLDER,
    modelscope_fallback: bool = True,
    modelscope_repo_id: str = DEFAULT_MODELSCOPE_REPO_ID,
    modelscope_revision: str = DEFAULT_MODELSCOPE_REVISION,
    modelscope_subfolder: str = DEFAULT_MODELSCOPE_SUBFOLDER,
) -> None:
    """Download each of `filenames` into `target_dir`; a file no source has raises ModelFileError."""
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    hf_repo, hf_revision, hf_subfolder = parse_hf_location(repo_id, subfolder)
    for filename in filenames:
        try:
            source = _from_hugging_face(filename, hf_repo, hf_revision, hf_subfolder)
        except OSError as hf_error:
            if not modelscope_fallback:
                raise _download_error(target, filename, f"Hugging Face failed ({hf_error})") from hf_error
            logger.warning("T5 tokenizer: %s not on Hugging Face (%s); trying ModelScope", filename, hf_error)
            try:
                source = _from_modelscope(filename, modelscope_repo_id, modelscope_revision, modelscope_subfolder)
            except Exception as ms_error:
                raise _download_error(
                    target, filename, f"Hugging Face failed ({hf_error}) and ModelScope failed ({ms_error})"
                ) from ms_error
        _copy_into(source, target / filename)
        logger.info("T5 tokenizer: downloaded %s into %s", filename, target)


def _download_error(target: Path, filename: str, found: str) -> ModelFileError:
    return ModelFileError(
        target / filename,
        "a T5 tokenizer file to download",
        found,
        "Copy the file into the folder by hand, or omit --t5_tokenizer_dir to use the bundled T5 tokenizer.",
    )
