"""Prodigy (prodigyopt): learning-rate-free Adam; kohya warns when the LR is not around 1."""

from __future__ import annotations

import importlib

from .base import OptimizerEntry

PRODIGY = OptimizerEntry(load_class=lambda: importlib.import_module("prodigyopt").Prodigy, package="prodigyopt")
