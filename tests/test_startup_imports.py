"""`--help` and every mistake that needs no model answer before torch, transformers, diffusers or bitsandbytes are
imported (issue 24 point 2): each case runs the real entry point in a fresh interpreter and reads its `sys.modules`.

Breaks these catch (each tried once, each failed): `import torch` back at the top of library/atomic.py (the parser's
imports: every case but --help's exit); `check_before_import(args)` not called in `main` (the model and count cases:
torch loads before their errors); `expected_shapes` replaced by the meta model's state dict in dit_header.py, or
`check_model_files` leaving out the width cross-check (the shape and width cases); `apply_seed_options` not called
there (the seed case: its error waits for torch). The last case shows the probe
sees torch when a check does need it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny_run import tiny_model

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "diffusers", "bitsandbytes")
PROBE = """
import json, sys
from anima_train_network import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as stop:
    code = stop.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"code": code, "heavy": heavy}))
"""


def run_main(*argv: str) -> tuple[int, list[str], str]:
    """(exit code, heavy packages imported, stderr) of `main(argv)` in a new interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=REPO, input=json.dumps(HEAVY), text=True,
                          capture_output=True, timeout=120, check=False)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], result["heavy"], done.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def test_help_imports_none_of_them() -> None:
    code, heavy, _ = run_main("--help")
    assert (code, heavy) == (0, [])


def test_a_bad_value_in_the_train_toml_imports_none_of_them(tiny: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text((tiny / "train_args.toml").read_text(encoding="utf-8") + 'loss_type = "L3"\n', encoding="utf-8")
    code, heavy, err = run_main("--config_file", str(config), "--output_dir", str(tmp_path / "out"))
    assert (code, heavy) == (2, []) and "loss_type: invalid value 'L3'" in err


def changed_copy(source: Path, target: Path, key: str, shape: tuple[int, ...]) -> Path:
    """`source` with the tensor `key` replaced by zeros of `shape` (a damaged or mismatched file)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source))
    save_file(tensors | {key: tensors[key].new_zeros(shape)}, str(target))
    return target


@pytest.mark.parametrize("case", ["dataset", "model", "shape", "width", "count", "cli", "seed"])
def test_mistakes_found_before_any_model_import_none_of_them(tiny: Path, tmp_path: Path, case: str) -> None:
    bad_dataset = tmp_path / "dataset.toml"
    bad_dataset.write_text("[general]\nshufle_caption = true\n\n" + (tiny / "dataset.toml").read_text(encoding="utf-8"),
                           encoding="utf-8")
    models = tiny / "models"
    extra, message = {
        "dataset": (["--dataset_config", str(bad_dataset)], "shufle_caption"),
        "model": (["--vae", str(models / "anima_tiny.safetensors")], "expected the file for --vae"),
        "shape": (["--pretrained_model_name_or_path", str(changed_copy(
            models / "anima_tiny.safetensors", tmp_path / "dit.safetensors", "net.blocks.1.mlp.layer2.weight", (3, 5)))],
            "net.blocks.1.mlp.layer2.weight [3, 5] (expected"),
        "width": (["--qwen3", str(changed_copy(models / "qwen3_tiny.safetensors", tmp_path / "qwen3.safetensors",
                                               "model.layers.0.post_attention_layernorm.weight", (24,)))], "wide Qwen states but the Qwen3 given"),
        "count": (["--max_train_steps", "0"], "--max_train_steps 0: must be 1 or more"),
        "cli": (["--network_dimm", "8"], "Did you mean `--network_dim`?"),
        "seed": (["--anima_flow_shift", "0"], "--anima_flow_shift must be positive"),
    }[case]
    code, heavy, err = run_main("--config_file", str(tiny / "train_args.toml"), "--output_dir", str(tmp_path / "o"),
                                *extra)
    assert (code, heavy) == (2, []) and message in err, err


def test_the_probe_sees_torch_when_a_check_needs_it(tiny: Path, tmp_path: Path) -> None:
    """`--optimizer_args` keys are checked against the torch class's signature: that one import is wanted."""
    code, heavy, err = run_main("--config_file", str(tiny / "train_args.toml"), "--output_dir", str(tmp_path / "o"),
                                "--optimizer_args", "foo=1")
    assert code == 2 and "torch" in heavy and "AdamW does not take foo" in err
