"""`--optimizer_type pytorch_optimizer.<Class>`: the optimizers of the `pytorch-optimizer` package (CAME, ADOPT,
Lion, the ScheduleFree family, ...), looked up as kohya looks them up (the module's attribute, case-sensitive).

The package loads only when such a name is given (it imports torch); a wrong class name lists the nearest ones.
"""

from __future__ import annotations

import importlib
import importlib.util

from library.arguments.parser import nearest_hint
from library.errors import ConfigError

from .base import OptimizerEntry

PACKAGE = "pytorch_optimizer"


def is_pytorch_optimizer(name: str) -> bool:
    return name.startswith(f"{PACKAGE}.") and name.count(".") == 1


def pytorch_optimizer_entry(name: str) -> OptimizerEntry:
    if importlib.util.find_spec(PACKAGE) is None:
        raise ConfigError(f"--optimizer_type {name} needs the pytorch-optimizer package: install this project's "
                          f"requirements (pip install -r requirements.txt) or `pip install pytorch-optimizer`.")
    import torch

    module = importlib.import_module(PACKAGE)
    class_name = name.partition(".")[2]
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        names = [key for key, value in vars(module).items()
                 if isinstance(value, type) and issubclass(value, torch.optim.Optimizer)]
        same = [key for key in names if key.lower() == class_name.lower()]
        hint = f" Did you mean `{PACKAGE}.{same[0]}`?" if same else nearest_hint(class_name, names)
        raise ConfigError(f"--optimizer_type {name}: pytorch_optimizer has no optimizer {class_name!r} (names are "
                          f"case-sensitive).{hint} It has: {', '.join(sorted(names))}.")
    schedule_free = "schedulefree" in class_name.lower() and hasattr(cls, "eval")
    return OptimizerEntry(load_class=lambda: cls, schedule_free=schedule_free)
