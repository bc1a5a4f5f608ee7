"""Reduce the rank of a LoRA file by SVD, as kohya's `networks/resize_lora.py` does, writing our ComfyUI form.

Per LoRA module (facts from kohya's script): scale = alpha / rank (1 without alpha); the raw product
up @ down is decomposed, its top singular values kept (a fixed `--new_rank`, or a dynamic count with
`--new_rank` as the cap), up = U·S, down = Vh, and alpha = scale · new rank, so the scale is unchanged and the
result is the best rank-r approximation of ΔW in the Frobenius norm. Ours differs in one way: the SVD of the
rank-r product is taken exactly through QR of the two factors (an r × r SVD, float64) instead of a full or
randomised SVD of the out × in matrix, so it is exact and fast also for 8192-wide layers.

Dynamic methods (kohya's): `sv_ratio P` keeps singular values above S[0] / P; `sv_cumulative P` keeps the
fewest whose sum reaches P of the total; `sv_fro P` keeps the fewest whose Frobenius norm reaches P of the
total. Norm deltas and a trained trigger's embedding rows (pivotal tuning, docs/pivotal_tuning.md) are copied
unchanged; LoKr modules are refused (a Kronecker product is not a low-rank
factorisation, there is nothing to truncate). Prints each module's retained Frobenius fraction.

    python tools/resize_anima_lora.py lora_r64.safetensors --output lora_r16.safetensors --new_rank 16
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import _bootstrap  # noqa: F401  (the repository root on sys.path, before any project import)
import torch
from _lora_cli import PRECISIONS, exit_code, our_form, precision, save_adapter
from _lora_read import ModulePatch, dit_skeleton, read_adapter, read_adapter_file

from library.errors import ConfigError
from networks._keys import ADAPTER_KINDS

MIN_SV = 1e-6  # kohya: a product whose largest singular value is below this is a zero matrix (kept at rank 1)
METHODS = ("sv_ratio", "sv_fro", "sv_cumulative")
NOTE_KEY = "anima_resized"


@dataclass
class Resized:
    path: str
    old_rank: int
    new_rank: int
    fro_retained: float


def choose_rank(s: torch.Tensor, new_rank: int, method: str | None, param: float | None) -> int:
    """How many singular values (sorted, descending) to keep: fixed, or dynamic capped at `new_rank`."""
    if float(s[0]) <= MIN_SV:
        return 1
    if method == "sv_ratio":
        keep = int((s > s[0] / param).sum())
    elif method == "sv_cumulative":
        keep = int(torch.searchsorted(torch.cumsum(s, 0) / s.sum(), torch.tensor(param, dtype=s.dtype))) + 1
    elif method == "sv_fro":
        energy = torch.cumsum(s**2, 0) / (s**2).sum()
        keep = int(torch.searchsorted(energy, torch.tensor(param**2, dtype=s.dtype))) + 1
    else:
        keep = new_rank
    return max(1, min(keep, new_rank, len(s)))


def resize_lora(
    patch: ModulePatch, new_rank: int, method: str | None, param: float | None, device: str
) -> tuple[ModulePatch, Resized]:
    """The best rank-k approximation of one LoRA module's ΔW, with its scale kept."""
    down = patch.tensors["lora_down.weight"].to(device, torch.float64)
    up = patch.tensors["lora_up.weight"].to(device, torch.float64)
    rank, scale = down.shape[0], float(patch.tensors["alpha"]) / down.shape[0]
    q_up, r_up = torch.linalg.qr(up)  # up @ down = q_up (r_up r_down^T) q_down^T
    q_down, r_down = torch.linalg.qr(down.T)
    u, s, vh = torch.linalg.svd(r_up @ r_down.T)
    keep = choose_rank(s, new_rank, method, param)
    new_up = (q_up @ u[:, :keep]) * s[:keep]
    new_down = vh[:keep] @ q_down.T
    total = float((s**2).sum())
    retained = (float((s[:keep] ** 2).sum()) / total) ** 0.5 if total > 0 else 1.0
    dtype = patch.tensors["lora_down.weight"].dtype
    tensors = {
        "lora_down.weight": new_down.to("cpu", dtype),
        "lora_up.weight": new_up.to("cpu", dtype),
        "alpha": torch.tensor(scale * keep),
    }
    return ModulePatch(patch.path, "lora", tensors), Resized(patch.path, rank, keep, retained)


def resize_weights(
    patches: list[ModulePatch],
    new_rank: int,
    method: str | None = None,
    param: float | None = None,
    device: str = "cpu",
) -> tuple[list[ModulePatch], list[Resized]]:
    if new_rank < 1:
        raise ConfigError(f"--new_rank {new_rank}: give a rank of 1 or more.")
    if (method is None) != (param is None):
        raise ConfigError("--dynamic_method and --dynamic_param go together; give both or neither.")
    if param is not None and param <= 0:
        raise ConfigError(
            f"--dynamic_param {param}: give a positive target (a fraction up to 1 for sv_fro/sv_cumulative)."
        )
    for kind, product in (("lokr", "a Kronecker product"), ("loha", "a Hadamard product of two low-rank pairs")):
        found = [p.path for p in patches if p.kind == kind]
        if found:
            raise ConfigError(
                f"{len(found)} {ADAPTER_KINDS[kind].label} modules (e.g. {found[0]}): {product} is not a low-rank "
                "factorisation, so there is no rank to reduce. Retrain with a smaller network_dim (or factor) instead."
            )
    out, report = [], []
    with torch.no_grad():
        for patch in patches:
            if patch.kind in ("norm", "embedding"):  # a trigger's rows: its rank is its row count, never cut
                out.append(patch)
                continue
            resized, info = resize_lora(patch, new_rank, method, param, device)
            out.append(resized)
            report.append(info)
    return out, report


def resize_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    new_rank: int,
    method: str | None = None,
    param: float | None = None,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    model_file: str | None = None,
) -> list[Resized]:
    weights, metadata = read_adapter_file(source)
    patches = read_adapter(weights, dit_skeleton(model_file), str(source))
    resized, report = resize_weights(patches, new_rank, method, param, device)
    alphas = {float(p.tensors["alpha"]) for p in resized if p.kind == "lora"}
    metadata["ss_network_dim"] = "Dynamic" if method else str(new_rank)
    metadata["ss_network_alpha"] = "Dynamic" if method or len(alphas) != 1 else str(alphas.pop())
    old = max((r.old_rank for r in report), default=0)
    how = f"{method} {param}, at most {new_rank}" if method else str(new_rank)
    metadata[NOTE_KEY] = f"rank {old} -> {how} by tools/resize_anima_lora.py (SVD, scale kept)"
    save_adapter(our_form(resized, dtype), output, metadata)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("input", help="the LoRA file to resize (any format --network_weights reads)")
    parser.add_argument("--output", required=True, help="the .safetensors file to write")
    parser.add_argument("--new_rank", type=int, required=True, help="the new rank (the cap with --dynamic_method)")
    parser.add_argument("--dynamic_method", choices=METHODS, default=None, help="choose each module's rank")
    parser.add_argument("--dynamic_param", type=float, default=None, help="the target of --dynamic_method")
    parser.add_argument("--device", default="cpu", help="where the SVDs run (cpu, cuda)")
    parser.add_argument("--save_precision", choices=sorted(PRECISIONS), default=None, help="default: the input's")
    parser.add_argument("--model", default=None, help="an Anima DiT file giving the exact module sizes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        report = resize_file(
            args.input,
            args.output,
            args.new_rank,
            args.dynamic_method,
            args.dynamic_param,
            args.device,
            precision(args.save_precision),
            args.model,
        )
        for r in report:
            print(f"{r.path:60s} rank {r.old_rank:4d} -> {r.new_rank:4d}  Frobenius retained {r.fro_retained:.2%}")
        mean = sum(r.fro_retained for r in report) / max(len(report), 1)
        print(f"wrote {args.output}: {len(report)} LoRA modules, mean Frobenius retained {mean:.2%}")

    return exit_code(work)


if __name__ == "__main__":
    sys.exit(main())
