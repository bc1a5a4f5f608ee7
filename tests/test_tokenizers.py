"""Bundled tokenizers (spec anima-model.md §5.1/§5.2 test vectors), user folders, and the T5 download rules."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerBase, Qwen2Tokenizer

from library.anima import t5_download
from library.anima.tokenizers import BUNDLED_QWEN_DIR, BUNDLED_T5_DIR, load_qwen_tokenizer, load_t5_tokenizer
from library.errors import ModelFileError

TAGS = "masterpiece, best quality, 1girl, solo"


@pytest.fixture(scope="module")
def qwen() -> PreTrainedTokenizerBase:
    return load_qwen_tokenizer()


@pytest.fixture(scope="module")
def t5() -> PreTrainedTokenizerBase:
    return load_t5_tokenizer()


def ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_qwen_spec_vectors(qwen: PreTrainedTokenizerBase) -> None:
    assert ids(qwen, TAGS) == [13629, 22362, 11, 1850, 4271, 11, 220, 16, 28552, 11, 13529]
    assert ids(qwen, "Hello world") == [9707, 1879]
    assert ids(qwen, "Hello, world!") == [9707, 11, 1879, 0]
    assert ids(qwen, "") == []
    assert qwen("Hello world")["input_ids"] == [9707, 1879]  # no BOS/EOS added even when asked for specials


def test_qwen_special_tokens(qwen: PreTrainedTokenizerBase) -> None:
    assert len(qwen) == 151669
    assert qwen.eos_token_id == qwen.pad_token_id == 151643
    assert qwen.convert_tokens_to_ids(["<|im_start|>", "<|video_pad|>", "<tool_call>", "</think>"]) == [
        151644,
        151656,
        151657,
        151668,
    ]
    assert ids(qwen, "1girl <|endoftext|> smile") == [16, 28552, 220, 151643, 15289]


def test_qwen_bundle_files() -> None:
    vocab = json.loads((BUNDLED_QWEN_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert sorted(vocab.values()) == list(range(151643))
    config = json.loads((BUNDLED_QWEN_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert (BUNDLED_QWEN_DIR / "NOTICE.md").is_file() and (BUNDLED_QWEN_DIR / "LICENSE-MIT").is_file()


def test_t5_spec_vectors(t5: PreTrainedTokenizerBase) -> None:
    assert len(t5) == 32100
    assert t5(TAGS)["input_ids"] == [20975, 6, 200, 463, 6, 209, 18722, 6, 6729, 1]
    assert t5("Hello world")["input_ids"] == [8774, 296, 1]
    assert t5("1girl, solo, masterpiece")["input_ids"] == [209, 18722, 6, 6729, 6, 20975, 1]
    assert t5("")["input_ids"] == [1]
    digest = hashlib.md5((BUNDLED_T5_DIR / "spiece.model").read_bytes()).hexdigest()
    assert digest == "9d15ef55d09d5a425ceb63fa31f7cae3"


def test_no_truncation_limit(qwen: PreTrainedTokenizerBase, t5: PreTrainedTokenizerBase) -> None:
    long = ", ".join(["red hair"] * 400)
    assert len(ids(t5, long)) > 512 and len(ids(qwen, long)) > 512
    assert qwen.model_max_length >= 10**8 and t5.model_max_length >= 10**8


@pytest.mark.parametrize("only", ["spiece.model", "tokenizer.json"])  # the latter is ComfyUI's t5_tokenizer form
def test_t5_user_folder_with_one_file(tmp_path: Path, only: str) -> None:
    shutil.copy(BUNDLED_T5_DIR / only, tmp_path / only)
    tokenizer = load_t5_tokenizer(tmp_path)
    assert len(tokenizer) == 32100
    assert tokenizer("Hello world")["input_ids"] == [8774, 296, 1]


@pytest.mark.parametrize("exists", [True, False])
def test_t5_missing_file_is_a_clear_error(tmp_path: Path, exists: bool) -> None:
    folder = tmp_path / "t5" if exists else tmp_path / "absent"
    if exists:
        folder.mkdir()
    with pytest.raises(ModelFileError) as caught:
        load_t5_tokenizer(folder)
    message = str(caught.value)
    assert str(folder / "spiece.model") in message
    assert "--auto_download_t5_tokenizer" in message and "omit --t5_tokenizer_dir" in message
    assert ("no such file" if exists else "no such folder") in message


def test_t5_wrong_tokenizer_is_rejected(tmp_path: Path) -> None:
    Qwen2Tokenizer(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[]).save_pretrained(tmp_path / "qwen")
    with pytest.raises(ModelFileError, match="cannot load"):
        load_t5_tokenizer(tmp_path / "qwen")
    (tmp_path / "t5").mkdir()
    shutil.copy(BUNDLED_T5_DIR / "spiece.model", tmp_path / "t5" / "spiece.model")
    (tmp_path / "t5" / "tokenizer_config.json").write_text('{"extra_ids": 0}', encoding="utf-8")
    with pytest.raises(ModelFileError, match="32000 ids"):
        load_t5_tokenizer(tmp_path / "t5")


def test_t5_auto_download_from_hugging_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_hf(repo_id: str, filename: str, subfolder: str | None = None, revision: str | None = None) -> str:
        calls.append((repo_id, filename, subfolder, revision))
        return str(BUNDLED_T5_DIR / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_hf)
    tokenizer = load_t5_tokenizer(tmp_path / "t5", auto_download=True, repo_id="owner/repo", subfolder="tok")
    assert calls == [("owner/repo", "spiece.model", "tok", None)]
    assert (tmp_path / "t5" / "spiece.model").read_bytes() == (BUNDLED_T5_DIR / "spiece.model").read_bytes()
    assert tokenizer("Hello world")["input_ids"] == [8774, 296, 1]


def test_t5_auto_download_falls_back_to_modelscope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline_hf(*args: object, **kwargs: object) -> str:
        raise OSError("offline")

    asked = []

    def fake_modelscope(filename: str, repo_id: str, revision: str, subfolder: str) -> str:
        asked.append((filename, repo_id, revision, subfolder))
        return str(BUNDLED_T5_DIR / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline_hf)
    monkeypatch.setattr(t5_download, "_from_modelscope", fake_modelscope)
    load_t5_tokenizer(tmp_path, auto_download=True)
    assert asked == [("spiece.model", "nv-community/Cosmos-Predict2-2B-Text2Image", "master", "tokenizer")]

    monkeypatch.setattr(t5_download, "_from_modelscope", offline_hf)
    with pytest.raises(ModelFileError, match="ModelScope failed"):
        load_t5_tokenizer(tmp_path / "other", auto_download=True)
    with pytest.raises(ModelFileError, match="Hugging Face failed"):
        load_t5_tokenizer(tmp_path / "third", auto_download=True, modelscope_fallback=False)


def test_hf_url_is_parsed() -> None:
    url = "https://huggingface.co/nvidia/Cosmos-Predict2-2B-Text2Image/tree/main/tokenizer"
    assert t5_download.parse_hf_location(url, "x") == ("nvidia/Cosmos-Predict2-2B-Text2Image", "main", "tokenizer")
    assert t5_download.parse_hf_location("google/t5-v1_1-base", "tokenizer") == (
        "google/t5-v1_1-base",
        None,
        "tokenizer",
    )


def test_qwen_user_folder_is_used_when_it_has_files(tmp_path: Path) -> None:
    Qwen2Tokenizer(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[]).save_pretrained(tmp_path)
    with pytest.raises(ModelFileError, match="<|endoftext|>"):
        load_qwen_tokenizer(tmp_path)


def test_qwen_folder_without_tokenizer_or_single_file_gets_the_bundled_one(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    weights = tmp_path / "qwen_3_06b_base.safetensors"
    weights.write_bytes(b"")
    for path in (tmp_path, weights, None):
        assert ids(load_qwen_tokenizer(path), "Hello world") == [9707, 1879]
