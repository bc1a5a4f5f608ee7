"""Anima's start-up checks of what would otherwise fail only after the models and caches are ready (hours on a real
dataset): the network against the DiT's header (`networks._plan`) and the torch.compile backend."""

from __future__ import annotations

import logging
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from library.anima.compile import check_dynamo_backend
from library.anima.model import AnimaConfig

logger = logging.getLogger(__name__)

UNSET_DYNAMO_BACKENDS = ("inductor", "no")  # our default, and kohya's (accelerate's "no dynamo")


def check_before_models(args: Namespace, network_args: Mapping[str, Any], config: AnimaConfig) -> None:
    """Called by `AnimaNetworkTrainer.assert_extra_args` with the DiT header's config; reads no weight."""
    from networks._plan import check_network_fits

    check_network_fits(args, network_args, config)
    if args.torch_compile:
        check_dynamo_backend(args.dynamo_backend)
    elif args.torch_compile_dynamic:
        logger.warning("--torch_compile_dynamic has no effect without --torch_compile; add --torch_compile or drop it.")
    elif args.dynamo_backend not in UNSET_DYNAMO_BACKENDS:
        logger.warning("--dynamo_backend %s has no effect without --torch_compile (it picks the torch.compile "
                       "backend of the DiT blocks); add --torch_compile or drop it.", args.dynamo_backend)
