"""The commands README.md and docs/*.md show (fenced blocks and inline code) name scripts that exist and options
their parsers know, the launcher's included (issue 24 point 8); the quickstart's training command runs on the tiny
model as written, with the tiny model's two files in place of the user's.

Breaks these catch (each run once, each failed): an option renamed in the parser but not in a doc (e.g.
quickstart's `--dataset_config` spelt `--dataset_conf`); a doc naming a tool that does not exist.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny_run import tiny_model

from library.anima.args import add_anima_arguments
from library.args import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = re.compile(r"(?:^|\s)((?:anima_train_network|tools/\w+|bench/\w+)\.py|scripts/\w+\.sh)(?=\s|$)")
STARTS = ("python ", "accelerate launch ", "bash ", "torchrun ")


def commands() -> list[tuple[str, str]]:
    """(doc name, command) for every line of a fenced block, and every inline code span, that runs a script."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
                 for line in block.replace("\\\n", " ").splitlines()]
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in lines:
            line = line.split("#")[0].strip()
            if line.startswith(STARTS) and SCRIPT.search(line):
                found.append((doc.name, line))
    return found


def options_of(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {opt for call in re.findall(r"add_argument\((.*?)\)", text, flags=re.S)
            for opt in re.findall(r"[\"'](--[\w-]+)[\"']", call)}


def known_options(script: str) -> set[str]:
    if script == "anima_train_network.py":
        parser = build_parser("docs")
        add_anima_arguments(parser)
        return set(parser._option_string_actions)  # noqa: SLF001
    folder = (ROOT / script).parent
    return {"--help", "-h"} | set().union(*(options_of(p) for p in folder.glob("*.py")))


def launcher_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return set(launch_command_parser()._option_string_actions)  # noqa: SLF001


COMMANDS = commands()


def test_the_docs_show_commands() -> None:
    assert any("quickstart" in doc and "anima_train_network.py" in cmd for doc, cmd in COMMANDS)
    assert any(cmd.startswith("accelerate launch") for _, cmd in COMMANDS)


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[f"{d}: {c[:60]}" for d, c in COMMANDS])
def test_each_command_names_a_real_script_and_real_options(doc: str, command: str) -> None:
    argv = [a for a in shlex.split(command.replace("...", "")) if a]
    index = next(i for i, a in enumerate(argv) if SCRIPT.search(f" {a} "))
    script = argv[index]
    assert (ROOT / script).is_file(), f"{doc}: {script} does not exist"
    before = {a.split("=")[0] for a in argv[:index] if a.startswith("--")}
    after = {a.split("=")[0] for a in argv[index + 1:] if a.startswith("--")}
    if argv[0] == "accelerate":
        assert not before - launcher_options(), f"{doc}: accelerate launch has no {sorted(before - launcher_options())}"
    unknown = sorted(after - known_options(script))
    assert not unknown, f"{doc}: {script} has no {unknown}"


def test_the_quickstart_training_command_runs_on_the_tiny_model(tmp_path: Path) -> None:
    command = next(c for d, c in COMMANDS if d == "quickstart.md" and c.startswith("python anima_train_network.py")
                   and "dataset.toml" in c)
    tiny = tiny_model(tmp_path / "tiny")
    argv = shlex.split(command)[1:]
    argv[argv.index("train_args.toml")] = str(tiny / "train_args.toml")
    argv[argv.index("dataset.toml")] = str(tiny / "dataset.toml")
    done = subprocess.run([sys.executable, *argv, "--output_dir", str(tmp_path / "out"), "--max_train_steps", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "anima_tiny_lora.safetensors").is_file()
