"""kohya's DeepSpeed options, accepted so that kohya TOMLs parse; this trainer does not support DeepSpeed and
`library.args.parse_args` rejects `--deepspeed`."""

from __future__ import annotations

import argparse

_NOT = "(DeepSpeed is not supported by this trainer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DeepSpeed (not supported)")
    g.add_argument("--deepspeed", action="store_true", help=f"Train with DeepSpeed {_NOT}.")
    g.add_argument("--zero_stage", type=int, default=2, choices=[0, 1, 2, 3], help=f"ZeRO stage {_NOT}.")
    g.add_argument(
        "--offload_optimizer_device",
        type=str,
        default=None,
        choices=[None, "cpu", "nvme"],
        help=f"Optimizer offload {_NOT}.",
    )
    g.add_argument("--offload_optimizer_nvme_path", type=str, default=None, help=f"Optimizer NVMe path {_NOT}.")
    g.add_argument(
        "--offload_param_device",
        type=str,
        default=None,
        choices=[None, "cpu", "nvme"],
        help=f"Parameter offload {_NOT}.",
    )
    g.add_argument("--offload_param_nvme_path", type=str, default=None, help=f"Parameter NVMe path {_NOT}.")
    g.add_argument("--zero3_init_flag", action="store_true", help=f"ZeRO-3 init {_NOT}.")
    g.add_argument("--zero3_save_16bit_model", action="store_true", help=f"ZeRO-3 16-bit save {_NOT}.")
    g.add_argument("--fp16_master_weights_and_gradients", action="store_true", help=f"fp16 master weights {_NOT}.")
