"""Bad inputs that used to pass the start-up checks and crash later (issue 17 point 5) now stop with `error: ...`,
exit code 2, before any model loads. Each test runs the real entry point (`anima_train_network.main`) with
`load_target_model` made to fail the test, so a check that comes too late (or not at all) fails it.

Breaks these tests catch (each was made once and failed them):
- library/input_checks.py `check_counts` with `value < 0` for `value < 1`: zero ranks, accumulation and step counts
  pass (and a `--max_train_steps 0` run goes on to load the models); `network_alpha < -1e9`: a negative alpha passes;
- `check_counts` without the `if not args.max_train_epochs` guard: `--max_train_steps 0 --max_train_epochs 1` is
  refused although the epochs decide the length;
- library/network_setup.py `check_adapter_file` without its `reader(path)` check: damaged --network_weights files
  reach the model load; reading every name as safetensors: a whole .pt is refused; without its `is_dir` branch: a state folder is "no such file", with no hint;
- library/weight_files.py without the data-offsets size check: a truncated adapter file passes; without the pickle
  signature check: a torch.save file named .safetensors gets a misleading reason; `torch_archive_problem` without
  `testzip()`: a .pt with a flipped byte passes; `torch_file_problem` without its legacy branch: a pre-1.6 .pt is
  refused;
- library/dataset/images.py `read_image_size` without its DecompressionBombError branch: a traceback;
- library/trainer.py without the `check_memory_fits` line: resolution 100000 reaches the model load;
- library/memory_estimate.py counting 1000 bytes a pixel in RAM or on the device: 2048 x 2048 at batch 8 on a 24 GiB
  machine is refused; checking the GPU against `None` instead of its free memory: a bucket too big for the GPU passes.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import toml
import torch
from _tiny_run import flip_middle, one_image_dataset, tiny_model, train, validate
from safetensors.torch import save_file

from anima_train_network import AnimaNetworkTrainer
from library import memory_estimate
from library.errors import ConfigError

GIB = 1024**3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def models_must_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the models started loading before the bad input was refused")

    monkeypatch.setattr(AnimaNetworkTrainer, "load_target_model", refuse)


def refused(tiny: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str,
            dataset: Path | None = None) -> str:
    """The `error: ...` line of a run that must stop with exit code 2 (a traceback would escape as an exception)."""
    with pytest.raises(SystemExit) as stopped:
        train(tiny, out, *extra, dataset=dataset)
    err = capsys.readouterr().err
    assert stopped.value.code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines and "Traceback" not in err, err
    return err[err.index("error: "):]


@pytest.mark.parametrize("option,value", [
    ("--network_dim", "0"), ("--network_dim", "-4"), ("--network_alpha", "-1"),
    ("--gradient_accumulation_steps", "0"), ("--gradient_accumulation_steps", "-2"),
    ("--max_train_steps", "0"), ("--max_train_steps", "-5"), ("--max_train_epochs", "0"), ("--max_train_epochs", "-1"),
])
def test_a_count_below_one_is_refused(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      option: str, value: str) -> None:
    said = refused(tiny, tmp_path / "out", capsys, option, value)
    assert f"{option} {value}" in said and ("must be 1 or more" in said or "must not be negative" in said)
    assert not (tmp_path / "out").exists()  # not even the output folder was made


def test_epochs_replace_a_zero_step_count_and_alpha_zero_means_the_rank(tiny: Path, tmp_path: Path) -> None:
    validate(tiny, tmp_path / "a", "--max_train_steps", "0", "--max_train_epochs", "1")
    validate(tiny, tmp_path / "b", "--network_alpha", "0")


def safetensors_bytes(tmp_path: Path) -> bytes:
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 16)}, str(tmp_path / "good.safetensors"))
    return (tmp_path / "good.safetensors").read_bytes()


def torch_saved(zipped: bool = True) -> bytes:
    buffer = io.BytesIO()
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(64, 16)}, buffer, _use_new_zipfile_serialization=zipped)
    return buffer.getvalue()


DAMAGES = {  # name: (file suffix, bytes from a good safetensors file, expected reason)
    "pickle": (".safetensors", lambda good: torch_saved(), "a PyTorch pickle"),
    "old_pickle": (".safetensors", lambda good: torch_saved(zipped=False), "a PyTorch pickle"),
    "truncated": (".safetensors", lambda good: good[:-10], "it is truncated"),
    "header_cut": (".safetensors", lambda good: good[:20], "it is truncated"),
    "huge_header": (".safetensors", lambda good: struct.pack("<Q", 2**40) + good[8:], "1099511627776-byte header"),
    "corrupt_header": (".safetensors", lambda good: good[:8] + b"#" * (len(good) - 8), "not safetensors JSON"),
    "empty": (".safetensors", lambda good: b"", "only 0 bytes"),
    "pt_truncated": (".pt", lambda good: torch_saved()[:-100], "not a readable torch.save archive"),
    "pt_flipped": (".pt", lambda good: flip_middle(torch_saved()), "checksum mismatch"),
    "pt_is_safetensors": (".pt", lambda good: good, "not a readable torch.save archive"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_an_unreadable_network_weights_file_is_refused(tiny: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str], damage: str) -> None:
    suffix, make, reason = DAMAGES[damage]
    bad = tmp_path / f"{damage}{suffix}"
    bad.write_bytes(make(safetensors_bytes(tmp_path)))
    said = refused(tiny, tmp_path / "out", capsys, "--network_weights", str(bad))
    assert f"--network_weights {bad}: cannot read it as a LoRA / LoKr file" in said and reason in said
    assert "Pass a .safetensors (or a torch.save .pt) adapter file" in said


def test_whole_pt_files_pass_as_the_loader_reads_them(tiny: Path, tmp_path: Path) -> None:
    """--save_model_as pt writes torch.save files, which --network_weights reads; a pre-1.6 pickle loads too."""
    for zipped in (True, False):
        (tmp_path / f"lora{zipped}.pt").write_bytes(torch_saved(zipped))
        validate(tiny, tmp_path / "out", "--network_weights", str(tmp_path / f"lora{zipped}.pt"))


def test_a_missing_file_or_a_folder_as_network_weights_is_refused(tiny: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    said = refused(tiny, tmp_path / "out", capsys, "--network_weights", str(tmp_path / "nope.safetensors"))
    assert f"--network_weights {tmp_path / 'nope.safetensors'}: no such file" in said
    state = tmp_path / "run-state"
    state.mkdir()
    (state / "model.safetensors").write_bytes(safetensors_bytes(tmp_path))
    said = refused(tiny, tmp_path / "out", capsys, "--network_weights", str(state))
    assert "this is a folder" in said and f"pass {state / 'model.safetensors'}" in said
    said = refused(tiny, tmp_path / "out", capsys, "--network_weights", str(state / "model.safetensors"))
    assert "no key matches a trainable module" in said  # the file reads whole; its one key fits no DiT module


def png_declaring(width: int, height: int) -> bytes:
    """A 60-byte PNG whose header claims width x height pixels (no real image data)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_decompression_bomb_image_is_refused_naming_it(tiny: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dataset = one_image_dataset(tiny, tmp_path)
    bomb = tmp_path / "one_image" / "bomb.png"
    bomb.write_bytes(png_declaring(100000, 100000))
    (tmp_path / "one_image" / "bomb.txt").write_text("a bomb", encoding="utf-8")
    said = refused(tiny, tmp_path / "out", capsys, dataset=dataset)
    assert f"{bomb}: its header declares an image of 10,000,000,000 pixels" in said
    assert "limit of 178,956,970 pixels" in said and "Shrink it" in said and "remove it" in said


def test_a_resolution_no_memory_can_hold_is_refused(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_estimate, "available_ram", lambda: 64 * GIB)
    dataset = one_image_dataset(tiny, tmp_path)
    config = toml.loads(dataset.read_text(encoding="utf-8"))
    config["datasets"][0] |= {"resolution": 100000, "max_bucket_reso": 100000}
    dataset.write_text(toml.dumps(config), encoding="utf-8")
    said = refused(tiny, tmp_path / "out", capsys, dataset=dataset)
    assert "datasets[0]: its largest bucket 100000x100000 (resolution 100000x100000)" in said
    assert "GiB of RAM" in said and "64.0 GiB is available" in said and "max_bucket_reso" in said


def test_ordinary_resolutions_fit_a_24_gib_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_estimate, "available_ram", lambda: 24 * GIB)
    monkeypatch.setattr(memory_estimate, "available_device_memory", lambda device: 24 * GIB)
    dataset = SimpleNamespace(bucket_counts=lambda: {(2048, 2048): 3, (1536, 2560): 2}, where="d",
                              params=SimpleNamespace(batch_size=8, resolution=(2048, 2048)))
    group = SimpleNamespace(datasets=[dataset], validation=None)
    for cache in (False, True):
        memory_estimate.check_memory_fits(SimpleNamespace(cache_latents=cache, vae_batch_size=8), group,
                                          torch.device("cuda"))


def test_on_cuda_the_gpu_memory_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """With plenty of RAM, a 16384 x 16384 bucket (3 GiB as float32) still cannot go to a GPU with 1 GiB free."""
    monkeypatch.setattr(memory_estimate, "available_ram", lambda: 1024 * GIB)
    monkeypatch.setattr(memory_estimate, "available_device_memory", lambda device: GIB)
    dataset = SimpleNamespace(bucket_counts=lambda: {(16384, 16384): 1}, where="dataset.toml: datasets[0]",
                              params=SimpleNamespace(batch_size=1, resolution=(16384, 16384)))
    group = SimpleNamespace(datasets=[dataset], validation=None)
    with pytest.raises(ConfigError, match=r"datasets\[0\]: .* needs at least 3.0 GiB of cuda memory .* 1.0 GiB is"):
        memory_estimate.check_memory_fits(SimpleNamespace(cache_latents=False, vae_batch_size=None), group,
                                          torch.device("cuda"))
