"""The kohya network object shared by `networks.lora_anima` and `networks.lokr_anima`.

It registers every adapter module (so accelerate/DDP see the parameters and `network.state_dict()` holds
them, kohya-cli.md §1.4), patches the targets' forwards on `apply_to`, groups parameters for the optimizer,
and reads/writes adapter files in the `diffusion_model.*` form, a Qwen3 LoRA as kohya's `lora_te_*` (`networks/_keys.py`).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable

import torch
import torch.nn as nn
from safetensors.torch import load_file

from library.atomic import atomic_path, save_safetensors_atomic
from library.errors import ConfigError
from library.nonfinite import check_finite_tensors
from networks._adapter_module import AdapterModule
from networks._args import get_arg, parse_float, parse_regex_values
from networks._keys import file_key, group_by_module, is_text_encoder_path, text_encoder_path
from networks._targets import is_adapter

logger = logging.getLogger(__name__)

TEXT_ENCODER_GROUP = "textencoder 1"  # kohya's name for the Qwen3 LoRA's parameter group (and its lr log)


def read_weights(file: str | os.PathLike) -> dict[str, torch.Tensor]:
    if str(file).endswith(".safetensors"):
        return load_file(str(file))
    return torch.load(file, map_location="cpu", weights_only=True)


def report_unmatched(unmatched: list[str], matched: int, file: str) -> None:
    """Warn about keys that address no module; a file where nothing matched is an error."""
    if not matched:
        shown = ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else "")
        raise ConfigError(
            f"--network_weights {file}: no key matches a trainable module of the Anima DiT ({len(unmatched)} keys, e.g. {shown})."
        )
    if unmatched:
        logger.warning(
            "%s: %d keys match no module of this network and were not loaded: %s",
            file,
            len(unmatched),
            ", ".join(unmatched),
        )


def keep_suffixes(tensors: dict, allowed: tuple[str, ...], unmatched: list[str]) -> dict:
    """Drop suffixes a module cannot take (`b_norm` on a bias-free norm) into the unmatched report."""
    unmatched.extend(key for suffix, (key, _t) in tensors.items() if suffix not in allowed)
    return {suffix: value for suffix, value in tensors.items() if suffix in allowed}


def write_adapter_file(tensors: dict[str, torch.Tensor], file: str | os.PathLike, dtype: torch.dtype | None,
                       metadata: dict[str, str]) -> None:
    """Atomic write, every tensor (alpha included) cast to `dtype`; a NaN or inf tensor refuses the write (a diverged
    network must not replace a good file). A name not ending .safetensors is a torch.save file (no metadata)."""
    tensors = {k: (t.detach().to("cpu", dtype) if dtype is not None else t.detach().cpu()) for k, t in tensors.items()}
    check_finite_tensors(tensors, str(file))
    if not str(file).endswith(".safetensors"):
        with atomic_path(file) as tmp:
            torch.save(tensors, tmp)
        return
    save_safetensors_atomic(tensors, file, metadata)


class AnimaAdapterNetwork(nn.Module):
    def __init__(
        self,
        module_name: str,
        adapters: list[AdapterModule],
        model_paths: list[str],
        multiplier: float,
        dim: int,
        alpha: float,
        network_args: dict[str, str],
        llm_adapter_lr: float | None = None,
        norm_lr: float | None = None,
    ) -> None:
        super().__init__()
        self.module_name, self.dim, self.alpha = module_name, dim, alpha
        self.network_args = dict(network_args)
        self.llm_adapter_lr, self.norm_lr = llm_adapter_lr, norm_lr
        self.model_paths = model_paths
        self.adapters = adapters
        self.after_save: list[Callable[[str], None]] = []  # e.g. Anima's standalone trigger file
        for adapter in adapters:
            self.add_module(adapter.path.replace(".", "_"), adapter)
        self.set_multiplier(multiplier)
        counts = Counter("norm" if a.kind == "norm" else "linear" for a in adapters)
        logger.info(
            "%s: %d Linear modules and %d norm scales wrapped, %d trainable parameters",
            module_name,
            counts["linear"],
            counts["norm"],
            sum(p.numel() for p in self.parameters()),
        )

    def add_adapter(self, adapter: AdapterModule) -> None:
        """Register a module built outside the network's own targets (Anima's trigger rows), before any load."""
        self.adapters.append(adapter)
        self.add_module(adapter.path.replace(".", "_"), adapter)
        self.model_paths = [*self.model_paths, adapter.path]
        adapter.multiplier = self.multiplier
        adapter.apply_to_org()

    # kohya hooks -------------------------------------------------------------------------------------------
    def apply_to(self, text_encoders, unet, apply_text_encoder: bool = False, apply_unet: bool = True) -> None:
        """Patch the forwards of the parts that train; the adapters of a part that does not are dropped from the
        network (kohya's rule: `apply_to` decides, so their tensors are neither trained, saved nor in a state)."""
        keep = [a for a in self.adapters if (apply_text_encoder if is_text_encoder_path(a.path) else apply_unet)]
        for adapter in self.adapters:
            if adapter not in keep:
                delattr(self, adapter.path.replace(".", "_"))
        self.adapters = keep
        counts = Counter("text encoder" if is_text_encoder_path(a.path) else "DiT" for a in keep)
        logger.info("%s: %d DiT modules and %d text-encoder modules applied", self.module_name, counts["DiT"],
                    counts["text encoder"])
        for adapter in keep:
            adapter.apply_to_org()

    def enable_gradient_checkpointing(self) -> None:
        """Nothing to do: patched forwards run inside the DiT's own checkpointed blocks."""

    def prepare_grad_etc(self, text_encoder, unet) -> None:
        self.requires_grad_(True)

    def on_epoch_start(self, text_encoder, unet) -> None:
        self.train()

    def get_trainable_params(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def set_multiplier(self, multiplier: float) -> None:
        self.multiplier = multiplier
        for adapter in self.adapters:
            adapter.multiplier = multiplier

    def prepare_optimizer_params(
        self, text_encoder_lr, unet_lr, default_lr=None, llm_adapter_lr=None, norm_lr=None
    ) -> tuple[list[dict], list[str]]:
        """Groups "unet", "llm_adapter" (adapter Linears), "norm" (all norm deltas, no weight decay) and kohya's
        "textencoder 1" (the Qwen3 LoRA); kohya's `network_reg_lrs` moves matching modules into "reg_lr_<i>" groups
        ("textencoder 1 reg_lr_<i>" for Qwen3 paths), and LoRA+ (`loraplus_lr_ratio`, `loraplus_unet_lr_ratio`,
        `loraplus_text_encoder_lr_ratio`) gives each LoRA's up matrix a "<group> plus" group at ratio x lr.

        A DiT group's lr is its own (argument, then network_args), else unet_lr, else default_lr; the text encoder's
        is text_encoder_lr (kohya's list form: its first value), else default_lr, as in kohya."""
        base_lr = unet_lr if unet_lr is not None else default_lr
        if isinstance(text_encoder_lr, (list, tuple)):
            text_encoder_lr = text_encoder_lr[0] if text_encoder_lr else None
        own_lrs = {
            "unet": None,
            "llm_adapter": llm_adapter_lr if llm_adapter_lr is not None else self.llm_adapter_lr,
            "norm": norm_lr if norm_lr is not None else self.norm_lr,
            TEXT_ENCODER_GROUP: text_encoder_lr if text_encoder_lr is not None else default_lr,
        }
        reg_lrs = parse_regex_values(self.network_args.get("network_reg_lrs"), "network_reg_lrs")
        plus_dit = parse_float(get_arg(self.network_args, "loraplus_unet_lr_ratio", "loraplus_lr_ratio"),
                               "loraplus_lr_ratio", None)
        plus_te = parse_float(get_arg(self.network_args, "loraplus_text_encoder_lr_ratio", "loraplus_lr_ratio"),
                              "loraplus_lr_ratio", None)
        groups: dict[str, dict] = {}

        def add(name: str, params: list[nn.Parameter], lr: float | None) -> None:
            group = groups.setdefault(name, {"params": []} | ({"lr": lr} if lr is not None else {}))
            group["params"].extend(params)
            if name.startswith("norm"):
                group["weight_decay"] = 0.0

        for adapter in self.adapters:
            if adapter.kind == "embedding":  # trigger rows: their own lr, no weight decay toward zero delta
                add("pivotal", list(adapter.parameters()), adapter.lr if adapter.lr is not None else base_lr)
                groups["pivotal"]["weight_decay"] = 0.0
                continue
            on_text_encoder = is_text_encoder_path(adapter.path)
            name = (TEXT_ENCODER_GROUP if on_text_encoder else "norm" if adapter.kind == "norm"
                    else "llm_adapter" if is_adapter(adapter.path) else "unet")
            lr = own_lrs[name] if own_lrs[name] is not None else base_lr
            path = text_encoder_path(adapter.path)
            for index, (pattern, value) in enumerate(reg_lrs):
                if adapter.kind != "norm" and pattern.fullmatch(path):
                    name = f"{TEXT_ENCODER_GROUP} reg_lr_{index}" if on_text_encoder else f"reg_lr_{index}"
                    lr = value
                    break
            params = list(adapter.parameters())
            plus = plus_te if on_text_encoder else plus_dit
            if plus is not None and adapter.kind == "lora":
                up = adapter.lora_up.weight
                add(f"{name} plus", [up], None if lr is None else lr * plus)
                params = [p for p in params if p is not up]
            add(name, params, lr)
        return list(groups.values()), list(groups)

    # files -------------------------------------------------------------------------------------------------
    def file_state_dict(self) -> dict[str, torch.Tensor]:
        return {file_key(a.path, suffix): t for a in self.adapters for suffix, t in a.file_tensors().items()}

    def save_weights(self, file: str | os.PathLike, dtype: torch.dtype | None, metadata: dict[str, str] | None) -> None:
        """Atomic write in `diffusion_model.*` form, a Qwen3 LoRA as `lora_te_*` (`write_adapter_file`)."""
        metadata = dict(metadata or {})
        metadata.setdefault("ss_network_module", self.module_name)
        metadata.setdefault("ss_network_dim", str(self.dim))
        metadata.setdefault("ss_network_alpha", str(self.alpha))
        if self.network_args:
            metadata.setdefault("ss_network_args", json.dumps(self.network_args))
        write_adapter_file(self.file_state_dict(), file, dtype, metadata)
        for hook in self.after_save:
            hook(str(file))

    def load_weights(self, file: str | os.PathLike) -> dict:
        """Load any supported key form; the file's alpha is adopted per module (its scale is what it was
        trained with, and the next save then keeps it; adapter-files.md §10 item 6)."""
        return self.load_state_from(read_weights(file), str(file))

    def load_state_from(self, weights: dict[str, torch.Tensor], source: str) -> dict:
        grouped, unmatched = group_by_module(weights, self.model_paths)
        by_path = {adapter.path: adapter for adapter in self.adapters}
        loads = {}
        for path, tensors in grouped.items():
            adapter = by_path.get(path)
            if adapter is None:
                unmatched.extend(key for key, _tensor in tensors.values())
            else:
                loads[path] = keep_suffixes(tensors, ("w_norm",), unmatched) if adapter.kind == "norm" else tensors
        report_unmatched(unmatched, len(loads), source)
        for path, tensors in loads.items():
            by_path[path].load_file_tensors(tensors)
        not_in_file = [path for path in by_path if path not in loads]
        logger.info(
            "%s: loaded %d modules; %d modules of the network are not in the file", source, len(loads), len(not_in_file)
        )
        return {"loaded": len(loads), "unmatched_keys": unmatched, "not_in_file": not_in_file}

    # merging and regularisation ----------------------------------------------------------------------------
    def is_mergeable(self) -> bool:
        return True

    def merge_to(
        self, text_encoders, unet, weights_sd: dict[str, torch.Tensor] | None, dtype=None, device=None
    ) -> None:
        """Add multiplier · ΔW into the model weights (after loading `weights_sd` when given)."""
        if weights_sd is not None:
            self.load_state_from(weights_sd, "merge weights")
        for adapter in self.adapters:
            adapter.merge_to_org(self.multiplier)

    @torch.no_grad()
    def apply_max_norm_regularization(self, max_norm_value: float, device) -> tuple[int, float, float]:
        """kohya's --scale_weight_norms: shrink each Linear adapter's ΔW to Frobenius norm ≤ max_norm_value."""
        scaled, norms = 0, []
        for adapter in (a for a in self.adapters if a.kind not in ("norm", "embedding")):
            norm = float(adapter.delta_weight().norm())
            if norm > max_norm_value:
                adapter.rescale_(max_norm_value / norm)
                scaled, norm = scaled + 1, max_norm_value
            norms.append(norm)
        return scaled, sum(norms) / max(len(norms), 1), max(norms, default=0.0)
