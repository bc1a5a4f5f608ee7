"""`[optimizer]` of a root-style file -> `optimizer_type` and `optimizer_args` (kohya `key=value` literals).

For the optimizers the old trainer offered (adamw, adamw8bit, prodigy) its defaults are written out
(weight decay 0.01, Prodigy's bias correction and safeguard warmup on), because Prodigy's own defaults differ.
"""

from __future__ import annotations

import math

from _root_mapping import Section

from library.registries.optimizers import OPTIMIZERS

OLD_OPTIMIZERS = ("AdamW", "AdamW8bit", "Prodigy")
WITH_BETAS = OLD_OPTIMIZERS + ("PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "RAdamScheduleFree",
                               "AdamWScheduleFree", "Lion", "Lion8bit", "PagedLion8bit")
WITH_EPS = tuple(name for name in WITH_BETAS if "Lion" not in name)
R_DEFAULTS = {"weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
PRODIGY = {  # old key -> (Prodigy argument, type, the old trainer's default)
    "prodigy_beta3": ("beta3", float, 0.999),
    "prodigy_d0": ("d0", float, 1e-6),
    "prodigy_d_coef": ("d_coef", float, 1.0),
    "prodigy_growth_rate": ("growth_rate", float, math.inf),
    "prodigy_slice_p": ("slice_p", int, 1),
    "prodigy_decouple": ("decouple", bool, True),
    "prodigy_use_bias_correction": ("use_bias_correction", bool, True),
    "prodigy_safeguard_warmup": ("safeguard_warmup", bool, True),
}


def optimizer_name(value: str) -> str:
    """Registry spelling, ignoring case and underscores (`radam_schedulefree` -> RAdamScheduleFree);
    anything else (a torch.optim class or a dotted path) is kept as written."""
    wanted = value.replace("_", "").lower()
    return next((name for name in OPTIMIZERS.names() if name.lower() == wanted), value)


def _number(value: float) -> str:
    return repr(float(value))


def _prodigy(section: Section, name: str, optimizer_args: list[str]) -> None:
    for key, (arg, kind, r_default) in PRODIGY.items():
        if name != "Prodigy":
            if section.has(key):
                section.conv.skip(section.key(key), f"only used with Prodigy, not {name}")
            continue
        value = section.value(key, kind)
        value = r_default if value is None else value
        if not (isinstance(value, float) and math.isinf(value)):  # inf is Prodigy's default and no literal
            optimizer_args.append(f"{arg}={value!r}")


def map_optimizer(section: Section) -> None:
    conv = section.conv
    name = optimizer_name(str(section.get("type", "adamw")).strip())
    conv.train_args["optimizer_type"] = name
    old = name in OLD_OPTIMIZERS
    values = {key: section.value(key, float) for key in R_DEFAULTS}
    if old:
        values = {key: R_DEFAULTS[key] if value is None else value for key, value in values.items()}
    if values["weight_decay"] is not None:
        conv.optimizer_args.append(f"weight_decay={_number(values['weight_decay'])}")
    for keys, allowed in ((("beta1", "beta2"), WITH_BETAS), (("eps",), WITH_EPS)):
        given = [values[key] for key in keys]
        if None in given:
            if any(v is not None for v in given):
                conv.skip(section.key(keys[0]), "beta1 and beta2 are only used together")
        elif name not in allowed:
            for key in keys:
                conv.skip(section.key(key), f"not an argument of {name}")
        elif keys == ("eps",):
            conv.optimizer_args.append(f"eps={_number(given[0])}")
        else:
            conv.optimizer_args.append(f"betas=({_number(given[0])},{_number(given[1])})")
    _prodigy(section, name, conv.optimizer_args)
