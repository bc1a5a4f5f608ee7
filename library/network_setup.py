"""Building the trained network: the --network_module names, kohya's --base_weights merge, --dim_from_weights, the
--network_weights warm start, and the optimizer groups of network modules that are not ours."""

from __future__ import annotations

import importlib
import inspect
import logging
from argparse import Namespace
from pathlib import Path
from types import ModuleType
from typing import Any

from library.errors import ConfigError
from library.text_encoder_lora import (
    checkpoint_text_encoders,
    describe_trained_parts,
    trains_denoiser,
    trains_text_encoder,
)
from library.weight_files import safetensors_problem, torch_file_problem

logger = logging.getLogger(__name__)

# kohya's LyCORIS-branch names, and LyCORIS's own kohya module, which runs through our wrapper so that its files
# are written in the form ComfyUI reads (networks/lycoris_kohya.py)
NETWORK_MODULE_ALIASES = {
    "networks.lokr": "networks.lokr_anima",
    "networks.loha": "networks.loha_anima",
    "lycoris.kohya": "networks.lycoris_kohya",
}
MODULES_WITHOUT_MODEL_ARGS = ("lycoris.kohya",)  # networks whose network_args defaults are their own, not --train_norm's
OWN_GROUP_LRS = ("llm_adapter_lr", "norm_lr")  # learning rates our networks take beyond kohya's three


def import_network_module(name: str) -> ModuleType:
    """The module `--network_module NAME` means, aliases resolved; an unknown name raises ImportError."""
    return importlib.import_module(NETWORK_MODULE_ALIASES.get(name, name))


def optimizer_params(network: Any, args: Namespace) -> Any:
    """`network.prepare_optimizer_params(text_encoder_lr, unet_lr, learning_rate, ...)`, passing our extra group
    learning rates only to a network that takes them: kohya's and LyCORIS's networks take the three positional
    ones only, and a set --llm_adapter_lr / --norm_lr then says that it has no effect there."""
    parameters = inspect.signature(network.prepare_optimizer_params).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = set(OWN_GROUP_LRS) if takes_any else set(parameters)
    extra = {name: getattr(args, name, None) for name in OWN_GROUP_LRS}
    for name, value in extra.items():
        if value is not None and name not in accepted:
            logger.warning("--%s %s has no effect with --network_module %s: its network has no such group; every "
                           "DiT adapter trains at --unet_lr (or --learning_rate).", name, value, args.network_module)
    kept = {name: value for name, value in extra.items() if name in accepted}
    return network.prepare_optimizer_params(args.text_encoder_lr, args.unet_lr, args.learning_rate, **kept)


def check_network_file_options(args: Namespace) -> None:
    """Start-up checks: the options fit together, and every file is a readable adapter file."""
    if args.dim_from_weights and not args.network_weights:
        raise ConfigError("--dim_from_weights takes the network's ranks from --network_weights, which is not set. "
                          "Give --network_weights FILE, or drop --dim_from_weights.")
    multipliers = args.base_weights_multiplier
    if multipliers and len(multipliers) != len(args.base_weights or []):
        raise ConfigError(f"--base_weights_multiplier has {len(multipliers)} values for "
                          f"{len(args.base_weights or [])} --base_weights files: give one per file (or none for 1.0).")
    for option, files in (("--network_weights", [args.network_weights] if args.network_weights else []),
                          ("--base_weights", args.base_weights or [])):
        for file in files:
            check_adapter_file(option, file)


def check_adapter_file(option: str, file: str) -> None:
    """An adapter file that reads whole, by the rule the networks load it (`networks._base.read_weights`): a name
    ending .safetensors by its header, any other (`--save_model_as pt`) as a torch.save archive. A cut-off
    download or a file of the wrong kind fails now, not after the DiT has loaded."""
    path = Path(file)
    if path.is_dir():
        inside = path / "model.safetensors"
        hint = f" For a state folder pass {inside} (or --resume {file})." if inside.is_file() else ""
        raise ConfigError(f"{option} {file}: this is a folder; pass the .safetensors file of a LoRA / LoKr.{hint}")
    if not path.is_file():
        raise ConfigError(f"{option} {file}: no such file.")
    reader = safetensors_problem if str(file).endswith(".safetensors") else torch_file_problem
    if problem := reader(path):
        raise ConfigError(f"{option} {file}: cannot read it as a LoRA / LoKr file: {problem}. Pass a .safetensors "
                          f"(or a torch.save .pt) adapter file named by its format; download a cut-off file again.")


def merge_base_weights(args: Namespace, models: Any, print_fn: Any) -> None:
    """Bake each --base_weights file into the frozen model before the trained network is applied (kohya)."""
    if not args.base_weights:
        return
    module = import_network_module(args.network_module)
    multipliers = args.base_weights_multiplier or [1.0] * len(args.base_weights)
    for file, multiplier in zip(args.base_weights, multipliers, strict=True):
        network, weights = module.create_network_from_weights(
            multiplier, file, models.vae, models.text_encoders, models.denoiser, for_inference=True)
        network.merge_to(models.text_encoders, models.denoiser, weights)
        print_fn(f"base weights merged into the model: {file} (multiplier {multiplier})")


def create_trained_network(args: Namespace, models: Any, kwargs: dict[str, str], print_fn: Any,
                           extend: Any = None) -> Any:
    """The network to train, applied to the parts that train (library/text_encoder_lora.py), given a model's own
    extra parts by `extend(args, network, models)` (Anima's trigger rows), then warm-started from --network_weights
    when given."""
    module = import_network_module(args.network_module)
    # kohya's contract hands the networks the text-encoder modules (Qwen3 itself, not our wrapper with its tokenizers)
    encoders = [getattr(te, "qwen", te) for te in models.text_encoders] if trains_text_encoder(args) else []
    if args.dim_from_weights:
        network, _ = module.create_network_from_weights(
            1.0, args.network_weights, models.vae, encoders, models.denoiser, **kwargs)
    else:
        network = module.create_network(1.0, args.network_dim, args.network_alpha, models.vae, encoders,
                                        models.denoiser, neuron_dropout=args.network_dropout, **kwargs)
    network.apply_to(encoders, models.denoiser, trains_text_encoder(args), trains_denoiser(args))
    if args.gradient_checkpointing:
        checkpoint_text_encoders(encoders)
    print_fn(describe_trained_parts(args))
    if extend is not None:
        extend(args, network, models)
    if args.network_weights:
        info = network.load_weights(args.network_weights)
        print_fn(f"warm start: network weights loaded from {args.network_weights} ({info}); "
                 f"optimizer and schedule start fresh (use --resume to continue a run).")
    return network
