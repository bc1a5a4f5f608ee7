"""Anima's keys in a saved LoRA: kohya's `ss_*` timestep keys and the `modelspec.*` block ComfyUI shows."""

from __future__ import annotations

import datetime
from argparse import Namespace


def _resolution(args: Namespace) -> str:
    value = getattr(args, "resolution", None)
    if not value:
        return "1024x1024"
    parts = [p.strip() for p in str(value).split(",")]
    return f"{parts[0]}x{parts[-1]}"


def anima_metadata(args: Namespace) -> dict[str, str]:
    meta = {
        "ss_timestep_sampling": args.timestep_sampling,
        "ss_sigmoid_scale": args.sigmoid_scale,
        "ss_discrete_flow_shift": args.discrete_flow_shift,
        "ss_weighting_scheme": args.weighting_scheme,
        "ss_logit_mean": args.logit_mean,
        "ss_logit_std": args.logit_std,
        "ss_mode_scale": args.mode_scale,
        "ss_train_norm": bool(args.train_norm),
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": "anima-preview/lora",
        "modelspec.implementation": "https://huggingface.co/circlestone-labs/Anima",
        "modelspec.title": args.metadata_title or args.output_name or "LoRA",
        "modelspec.resolution": _resolution(args),
        "modelspec.date": datetime.datetime.now().replace(microsecond=0).isoformat(),
        "modelspec.prediction_type": "flow",
    }
    for key in ("author", "description", "license", "tags", "usage_hint", "thumbnail", "merged_from",
                "trigger_phrase", "preprocessor", "is_negative_embedding"):
        value = getattr(args, f"metadata_{key}", None)
        if value:
            meta[f"modelspec.{key}"] = value
    return {key: str(value) for key, value in meta.items()}
