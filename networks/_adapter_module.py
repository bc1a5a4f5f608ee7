"""What every adapter module shares: a hidden link to the patched model module, forward patching, loading.

The model module is kept (not replaced) and only its `forward` is swapped, so the DiT's own state dict,
gradient checkpointing and `load_anima_dit` are untouched. The link is a tuple, so the model module is not
registered under the network: `network.state_dict()` holds only adapter tensors, under the same suffixes
as the file (`lora_down.weight`, `lokr_w1`, `w_norm`, `alpha`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from library.errors import ConfigError
from networks._keys import ADAPTER_KINDS, kind_of_suffix


def check_file_tensors(kind: str, path: str, own: dict[str, tuple[int, ...]],
                       tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """A file's `{suffix: (key, shape)}` for one module fits the module's `{suffix: shape}`; used by the load and by
    the start-up check of --network_weights (`networks._plan`), which has the header's shapes only."""
    for suffix, (key, _shape) in tensors.items():
        other = kind_of_suffix(suffix)
        if suffix not in own and other not in (None, kind):
            raise ConfigError(f"--network_weights key {key}: a {ADAPTER_KINDS[other].label} weight; load this file "
                              f"with --network_module {ADAPTER_KINDS[other].module}.")
    for suffix, (key, shape) in tensors.items():
        if suffix not in own:
            raise ConfigError(
                f"--network_weights key {key}: the network's {kind} module for {path} has no "
                f"'{suffix}' (it holds {sorted(own)}). Build the network from the file "
                "(--dim_from_weights) or choose the matching --network_module / network_dim / factor."
            )
        if suffix != "alpha" and tuple(shape) != tuple(own[suffix]):
            raise ConfigError(
                f"--network_weights key {key}: shape {tuple(shape)} in the file, but the network has "
                f"{tuple(own[suffix])} for {path}.{suffix}. Use --dim_from_weights or the file's network_dim."
            )
    missing = [suffix for suffix in own if suffix != "alpha" and suffix not in tensors]
    if missing:
        key = next(iter(tensors.values()))[0]
        raise ConfigError(f"--network_weights key {key}: the file lacks {missing} for module {path}.")


class AdapterModule(nn.Module):
    kind = "adapter"

    def __init__(self, path: str, org_module: nn.Module, multiplier: float = 1.0) -> None:
        super().__init__()
        self.path = path
        self._org = (org_module,)
        self._org_forward = None
        self.multiplier = multiplier
        self.scale = 1.0
        # a restored state (resume, --network_weights) brings its alpha; the scale must follow it
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module.refresh_scale())

    @property
    def org_module(self) -> nn.Module:
        return self._org[0]

    def _model_device(self) -> torch.device | None:
        """Where the factors are made: the model module's device (None on meta: the network moves later)."""
        weight = self.org_module.weight
        return None if weight.is_meta else weight.device

    def _add_factors(self, shapes: dict[str, tuple[int, ...]],
                     init: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
        """One parameter per factor of `shapes` (its alpha aside), made by `init(suffix, empty tensor)`."""
        device = self._model_device()
        for suffix, shape in shapes.items():
            if suffix != "alpha":
                setattr(self, suffix, nn.Parameter(init(suffix, torch.empty(*shape, device=device))))

    def _finish_init(self, alpha: float, rank_dropout: float | None, module_dropout: float | None) -> None:
        """The stored alpha (a buffer, saved with the factors), the dropouts, and the scale from both."""
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.rank_dropout, self.module_dropout = rank_dropout, module_dropout
        self.refresh_scale()

    def refresh_scale(self) -> None:
        """Recompute `self.scale` from the `alpha` buffer (no-op for modules without one)."""

    def delta_weight(self) -> torch.Tensor:
        """ΔW of the patched weight at multiplier 1, training scale included."""
        raise NotImplementedError

    def rescale_(self, ratio: float) -> None:
        """Multiply ΔW by `ratio` (max-norm regularisation) by scaling one factor it is linear in."""
        raise NotImplementedError

    def apply_to_org(self) -> None:
        if self._org_forward is None:
            self._org_forward = self.org_module.forward
            self.org_module.forward = self.forward

    @torch.no_grad()
    def merge_to_org(self, multiplier: float) -> None:
        weight = self.org_module.weight
        weight += (self.delta_weight() * multiplier).to(weight.device, weight.dtype)

    def file_tensors(self) -> dict[str, torch.Tensor]:
        """`{suffix: tensor}` as written to an adapter file (the state dict, unless the file form differs)."""
        return self.state_dict()

    def load_file_tensors(self, tensors: dict[str, tuple[str, torch.Tensor]]) -> None:
        """Load `{suffix: (file key, tensor)}`; a missing alpha means scale 1 (alpha = rank)."""
        own = self.state_dict()
        check_file_tensors(self.kind, self.path, {suffix: tuple(t.shape) for suffix, t in own.items()},
                           {suffix: (key, tuple(t.shape)) for suffix, (key, t) in tensors.items()})
        values = {suffix: tensor for suffix, (_key, tensor) in tensors.items()}
        if "alpha" in own and "alpha" not in values:
            values["alpha"] = torch.tensor(float(self.rank))
        self.load_state_dict({k: v.reshape(own[k].shape).to(own[k].dtype) for k, v in values.items()})

    @property
    def rank(self) -> int:
        raise NotImplementedError

    def forward_whole_delta(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """The forward of adapters whose ΔW is built whole (LoKr, LoHa): y = W x + multiplier · ΔW x. Their rank
        dropout is LyCORIS's: whole output rows of ΔW dropped, no rescaling."""
        out = self._org_forward(x, *args, **kwargs)
        if self.training and self.module_dropout and torch.rand(()) < self.module_dropout:
            return out
        delta = self.delta_weight()
        if self.training and self.rank_dropout:
            keep = torch.rand(delta.shape[0], 1, device=delta.device) > self.rank_dropout
            delta = delta * keep.to(delta.dtype)
        update = torch.nn.functional.linear(x.to(delta.dtype), delta * self.multiplier)
        return out + update.to(out.dtype)
