"""The seed project's own options (FHfanshu sd-scripts-anima, `anima_train_network.py`), so its TOMLs run as they are.

Each one either keeps its meaning, mapped onto this trainer's options (`anima_timestep_sampling`, `anima_sigmoid_scale`
and `anima_flow_shift` onto --timestep_sampling / --sigmoid_scale / --discrete_flow_shift; `anima_attention_backend`
and `xfomers` onto --xformers, which runs as SDPA; `anima_noise_offset` acts in library/anima/flow.py), or is
accepted with one warning that says what happens here instead and why. Defaults are None, so only what a file sets
acts or warns; the seed's defaults apply to what is left unset within a family (its flow shift 3.0, for example).
`apply_seed_options` runs at start-up and again in `validate` (so it is idempotent; the second run's warnings show).
"""

from __future__ import annotations

import argparse
import logging
from argparse import BooleanOptionalAction, Namespace

from library.errors import ConfigError

logger = logging.getLogger(__name__)

SEED = "The seed project's"
# The seed's sampler: sigma = shift(sigmoid(scale * N(0, 1))) or shift(U(0, 1)), shift k*s / (1 + (k-1)*s).
SEED_SAMPLERS = {"logit_normal": "shift", "uniform": "uniform_shift"}
SEED_SAMPLING_DEFAULTS = {"anima_timestep_sampling": "logit_normal", "anima_sigmoid_scale": 1.0,
                          "anima_flow_shift": 3.0}
# Our defaults (library/anima/args.py ANIMA_DEFAULTS): a value still at one of them was not chosen by the user.
_OURS = {"timestep_sampling": "sigmoid", "sigmoid_scale": 1.0, "discrete_flow_shift": 1.0}
_WARNINGS = {
    "anima_seq_len": "captions are never truncated and the context is padded to max(512, T5 tokens) rows, as "
                     "ComfyUI builds it where the LoRA is used; the seed cut or padded it to this length",
    "anima_resume_snapshot_strict": "--resume here always refuses a state whose network (module, dim, alpha, "
                                    "network_args) or optimizer differ, and lets the batch size, schedule and "
                                    "precision change, as kohya does; there is no stricter or looser mode",
    "resume_ignore_optimizer_mismatch": "a state whose optimizer differs is refused before training rather than "
                                        "resumed with a fresh optimizer; to change optimizer, start from that "
                                        "state's LoRA with --network_weights (optimizer and schedule start fresh)",
    "t5_tokenizer_validate_strict": "the T5 tokenizer is always checked here (vocabulary size, pad and </s> ids), "
                                    "and the check cannot be switched off",
    "tensorboard": "TensorBoard is not started by this trainer; start it yourself with `tensorboard --logdir "
                   "<logging_dir>` (logging is on with --logging_dir)",
}
# option -> the values at which its meaning holds here without a word (None: warn for any value set)
_SILENT_AT = {"anima_seq_len": (), "anima_resume_snapshot_strict": (), "resume_ignore_optimizer_mismatch": (False,),
              "t5_tokenizer_validate_strict": (True,)}
TENSORBOARD = ("auto_start_tensorboard", "tensorboard_host", "tensorboard_port", "tensorboard_logdir")


def add_seed_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the seed project's options (FHfanshu sd-scripts-anima)")
    g.add_argument("--anima_attention_backend", choices=["torch", "xformers"], default=None,
                   help=f"{SEED} attention choice: torch = SDPA (the default); xformers = --xformers (runs as SDPA).")
    g.add_argument("--xfomers", action=BooleanOptionalAction, default=None,
                   help=f"{SEED} misspelt --xformers: true means --xformers (runs as SDPA); false changes nothing.")
    g.add_argument("--anima_seq_len", type=int, default=None,
                   help=f"{SEED} context length. Accepted with a warning: {_WARNINGS['anima_seq_len']}.")
    g.add_argument("--anima_timestep_sampling", choices=list(SEED_SAMPLERS), default=None,
                   help=f"{SEED} noise-level sampler, with its defaults for the two below: logit_normal = "
                   "--timestep_sampling shift, uniform = --timestep_sampling uniform_shift.")
    g.add_argument("--anima_sigmoid_scale", type=float, default=None,
                   help=f"{SEED} logit-normal scale (default 1.0 when an anima_* sampling option is set): "
                   "--sigmoid_scale.")
    g.add_argument("--anima_flow_shift", type=float, default=None,
                   help=f"{SEED} flow shift (default 3.0 when an anima_* sampling option is set): "
                   "--discrete_flow_shift.")
    g.add_argument("--anima_noise_offset", type=float, default=None,
                   help=f"{SEED} channel-wise noise offset: the flow-matching noise gets offset x N(0, 1) added per "
                   "sample and channel (the same for every pixel), in the model input and the velocity target.")
    g.add_argument("--anima_resume_snapshot_strict", action=BooleanOptionalAction, default=None,
                   help=f"{SEED} resume check mode. Accepted with a warning: "
                   f"{_WARNINGS['anima_resume_snapshot_strict']}.")
    g.add_argument("--resume_ignore_optimizer_mismatch", action=BooleanOptionalAction, default=None,
                   help=f"{SEED} optimizer fallback on resume. False is what happens here; true warns: "
                   f"{_WARNINGS['resume_ignore_optimizer_mismatch']}.")
    g.add_argument("--t5_tokenizer_validate_strict", action=BooleanOptionalAction, default=None,
                   help=f"{SEED} strict T5 tokenizer check. True is what happens here; false warns: "
                   f"{_WARNINGS['t5_tokenizer_validate_strict']}.")
    g.add_argument("--auto_start_tensorboard", action=BooleanOptionalAction, default=None,
                   help=f"{SEED} TensorBoard start. Accepted with a warning: {_WARNINGS['tensorboard']}.")
    for name, kind in (("tensorboard_host", str), ("tensorboard_port", int), ("tensorboard_logdir", str)):
        g.add_argument(f"--{name}", type=kind, default=None, help=f"{SEED} TensorBoard {name.split('_')[1]}; "
                       "accepted with the --auto_start_tensorboard warning.")


def apply_seed_options(args: Namespace) -> None:
    """Map the seed's options onto ours, refuse contradictions, and warn where the meaning differs."""
    _map_sampling(args)
    if args.anima_attention_backend == "xformers" or args.xfomers:
        args.xformers = True  # resolve_attn_mode then runs SDPA and says so
    if args.anima_noise_offset is not None and not abs(args.anima_noise_offset) < float("inf"):
        raise ConfigError(f"--anima_noise_offset must be a finite number (got {args.anima_noise_offset}).")
    for option, silent in _SILENT_AT.items():
        value = getattr(args, option)
        if value is not None and value not in silent:
            logger.warning("--%s %s: %s.", option, value, _WARNINGS[option])
    if given := [f"--{name}" for name in TENSORBOARD if getattr(args, name) not in (None, False)]:
        logger.warning("%s: %s.", " ".join(given), _WARNINGS["tensorboard"])


def _map_sampling(args: Namespace) -> None:
    """The seed's sampler family, its defaults filling what is unset, onto ours (library/registries/timesteps)."""
    if all(getattr(args, name) is None for name in SEED_SAMPLING_DEFAULTS):
        return
    seed = {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in SEED_SAMPLING_DEFAULTS.items()}
    mapped = {"timestep_sampling": SEED_SAMPLERS[seed["anima_timestep_sampling"]],
              "sigmoid_scale": seed["anima_sigmoid_scale"], "discrete_flow_shift": seed["anima_flow_shift"]}
    for ours, value in mapped.items():
        current = getattr(args, ours)
        if current not in (_OURS[ours], value):
            raise ConfigError(f"--{ours} {current} contradicts the seed project's sampling options (they mean "
                              f"--{ours} {value}): keep one of the two.")
    for name in ("anima_sigmoid_scale", "anima_flow_shift"):
        if not seed[name] > 0:
            raise ConfigError(f"--{name} must be positive (got {seed[name]}).")
    vars(args).update(mapped)
