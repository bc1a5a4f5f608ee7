"""Building the trained network: kohya's --base_weights merge, --dim_from_weights, and the --network_weights warm start."""

from __future__ import annotations

import importlib
from argparse import Namespace
from pathlib import Path
from typing import Any

from library.errors import ConfigError
from library.weight_files import safetensors_problem, torch_file_problem


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
    module = importlib.import_module(args.network_module)
    multipliers = args.base_weights_multiplier or [1.0] * len(args.base_weights)
    for file, multiplier in zip(args.base_weights, multipliers, strict=True):
        network, weights = module.create_network_from_weights(
            multiplier, file, models.vae, models.text_encoders, models.denoiser, for_inference=True)
        network.merge_to(models.text_encoders, models.denoiser, weights)
        print_fn(f"base weights merged into the model: {file} (multiplier {multiplier})")


def create_trained_network(args: Namespace, models: Any, kwargs: dict[str, str], print_fn: Any,
                           extend: Any = None) -> Any:
    """The network to train, applied to the model, given a model's own extra parts by `extend(args, network,
    models)` (Anima's trigger rows), then warm-started from --network_weights when given."""
    module = importlib.import_module(args.network_module)
    if args.dim_from_weights:
        network, _ = module.create_network_from_weights(
            1.0, args.network_weights, models.vae, models.text_encoders, models.denoiser, **kwargs)
    else:
        network = module.create_network(1.0, args.network_dim, args.network_alpha, models.vae, models.text_encoders,
                                        models.denoiser, neuron_dropout=args.network_dropout, **kwargs)
    network.apply_to(models.text_encoders, models.denoiser, False, True)
    if extend is not None:
        extend(args, network, models)
    if args.network_weights:
        info = network.load_weights(args.network_weights)
        print_fn(f"warm start: network weights loaded from {args.network_weights} ({info}); "
                 f"optimizer and schedule start fresh (use --resume to continue a run).")
    return network
