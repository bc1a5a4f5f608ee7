"""Load Anima's two tokenizers without the network: the user's folder when it has the files, else ours.

Both tokenizers are bundled in `library/anima/assets/` (see the NOTICE.md files there), so a run never needs a
model hub. A user's T5 folder that lacks files is completed by download only when asked (`auto_download`,
from `--auto_download_t5_tokenizer`); otherwise the missing file is a `ModelFileError` that says what to do.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase, Qwen2Tokenizer, T5Tokenizer

from library.anima import t5_download
from library.errors import ModelFileError

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED_QWEN_DIR = ASSETS / "qwen3_tokenizer"
BUNDLED_T5_DIR = ASSETS / "t5_tokenizer"

QWEN_PAD_ID = 151643  # <|endoftext|>: eos = pad; ComfyUI's whole input for an empty prompt
T5_EOS_ID = 1
T5_PAD_ID = 0
T5_VOCAB_SIZE = 32100  # 32,000 SentencePiece pieces + 100 <extra_id_*>
NO_LENGTH_LIMIT = 10**8  # ComfyUI tokenizes without a maximum; this also silences "sequence too long" warnings
T5_REQUIRED = "spiece.model"  # what a T5 folder needs; a tokenizer.json alone also loads
_T5_FIX = "Omit --t5_tokenizer_dir to use the bundled T5 tokenizer."


def _has_qwen_files(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    )


def load_qwen_tokenizer(qwen_path: str | Path | None = None) -> Qwen2Tokenizer:
    """Qwen3's tokenizer from the `--qwen3` folder if it holds tokenizer files, else the bundled one.

    A single `.safetensors` text encoder (what ComfyUI users have) carries no tokenizer, so it gets ours.
    """
    folder = Path(qwen_path) if qwen_path and Path(qwen_path).is_dir() else None
    folder = folder if folder is not None and _has_qwen_files(folder) else BUNDLED_QWEN_DIR
    tokenizer = Qwen2Tokenizer.from_pretrained(str(folder))
    if tokenizer.convert_tokens_to_ids("<|endoftext|>") != QWEN_PAD_ID:
        raise ModelFileError(
            folder,
            f"a Qwen3 tokenizer (<|endoftext|> = {QWEN_PAD_ID})",
            f"<|endoftext|> = {tokenizer.convert_tokens_to_ids('<|endoftext|>')}",
            "Remove the tokenizer files from that folder to use the bundled Qwen3 tokenizer.",
        )
    tokenizer.model_max_length = NO_LENGTH_LIMIT
    return tokenizer


def load_t5_tokenizer(
    t5_tokenizer_dir: str | Path | None = None,
    *,
    auto_download: bool = False,
    repo_id: str = t5_download.DEFAULT_REPO_ID,
    subfolder: str = t5_download.DEFAULT_SUBFOLDER,
    modelscope_fallback: bool = True,
    modelscope_repo_id: str = t5_download.DEFAULT_MODELSCOPE_REPO_ID,
    modelscope_revision: str = t5_download.DEFAULT_MODELSCOPE_REVISION,
    modelscope_subfolder: str = t5_download.DEFAULT_MODELSCOPE_SUBFOLDER,
) -> PreTrainedTokenizerBase:
    """The T5 tokenizer from `t5_tokenizer_dir`, or the bundled one when no folder is given."""
    folder = Path(t5_tokenizer_dir) if t5_tokenizer_dir else BUNDLED_T5_DIR
    if not (folder / T5_REQUIRED).is_file() and not (folder / "tokenizer.json").is_file():
        if not auto_download:
            raise ModelFileError(
                folder / T5_REQUIRED,
                "the T5 tokenizer file spiece.model (or tokenizer.json) in --t5_tokenizer_dir",
                "no such file" if folder.is_dir() else "no such folder",
                "Pass --auto_download_t5_tokenizer to download it into that folder, or omit --t5_tokenizer_dir "
                "to use the bundled T5 tokenizer.",
            )
        t5_download.download_t5_tokenizer_files(
            folder,
            [T5_REQUIRED],
            repo_id=repo_id,
            subfolder=subfolder,
            modelscope_fallback=modelscope_fallback,
            modelscope_repo_id=modelscope_repo_id,
            modelscope_revision=modelscope_revision,
            modelscope_subfolder=modelscope_subfolder,
        )
    try:
        tokenizer = T5Tokenizer.from_pretrained(str(folder))
    except Exception as err:  # transformers raises anything from TypeError to OSError on foreign files
        raise ModelFileError(
            folder, "a T5 tokenizer folder", f"files transformers cannot load as one ({err})", _T5_FIX
        ) from err
    ids = tokenizer("")["input_ids"]
    if len(tokenizer) != T5_VOCAB_SIZE or ids != [T5_EOS_ID] or tokenizer.pad_token_id != T5_PAD_ID:
        raise ModelFileError(
            folder,
            f"the T5 v1.1 tokenizer ({T5_VOCAB_SIZE} ids, pad 0, </s> 1)",
            f"{len(tokenizer)} ids, pad {tokenizer.pad_token_id}, '' -> {ids}",
            _T5_FIX,
        )
    tokenizer.model_max_length = NO_LENGTH_LIMIT
    return tokenizer
