"""How this process was started, so that a printed resume command launches the run the same way.

Under `accelerate launch` (or torchrun) the trainer's parent is the launcher, whose command line in /proc holds the
options the user typed (`--multi_gpu --num_processes 2`, `--config_file accel.yaml`, ...) before the script. A resume
command rebuilt from the trainer's own argv alone would lose them and resume a 2-process state in 1 process.
"""

from __future__ import annotations

import os
import sys

from library.launcher_death import LAUNCHER_MODULES, LAUNCHER_PROGRAMS, process_argv

# How users type each launcher (a `python -m` form is printed as the command it stands for).
TYPED = {"accelerate.commands.launch": ["accelerate", "launch"], "torch.distributed.run": ["torchrun"],
         "torch.distributed.launch": ["python", "-m", "torch.distributed.launch"]}


def launcher_options(argv: list[str], script: str) -> list[str] | None:
    """The launcher as typed and its options, up to `script`, from a launcher's argv; None when `argv` is not a
    launcher that runs `script`."""
    for index, item in enumerate(argv):
        following = argv[index + 1] if index + 1 < len(argv) else ""
        name = os.path.basename(item)
        if item == "-m" and following in LAUNCHER_MODULES:
            typed, first = TYPED[following], index + 2
            break
        if name == "accelerate" and following == "launch":
            typed, first = ["accelerate", "launch"], index + 2
            break
        if name in LAUNCHER_PROGRAMS:
            typed, first = [name], index + 1
            break
    else:
        return None
    script_name = os.path.basename(script)
    end = next((i for i in range(first, len(argv)) if os.path.basename(argv[i]) == script_name), None)
    return None if end is None else typed + argv[first:end]


def launch_prefix() -> list[str]:
    """What goes before the script in a command that starts this run again: the parent launcher with its options,
    or `python` when the script was run directly."""
    found = launcher_options(process_argv(os.getppid()), sys.argv[0]) if sys.platform.startswith("linux") else None
    return found if found is not None else ["python"]
