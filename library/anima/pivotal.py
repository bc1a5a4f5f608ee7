"""Pivotal tuning in a run: the trigger's rows joined to the network, their metadata, and the standalone copy.

The rows are a module of the trained network (`networks._embedding_rows`), so the optimizer, `--save_state` /
`--resume`, `--network_weights` and sampling treat them like every other adapter, and the LoRA file holds them as
`diffusion_model.llm_adapter.embed.lora_up/lora_down/alpha`. The text cache is unaffected: it holds T5 ids, and the
llm_adapter runs live on them at every step anyway (docs/pivotal_tuning.md).
"""

from __future__ import annotations

import json
import logging
from argparse import Namespace
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from library.anima.pivotal_args import TRIGGER_FILE_FORMAT
from library.anima.pivotal_checks import TriggerPlan, plan_trigger
from library.atomic import save_safetensors_atomic
from library.dataset.captions import render_caption
from library.errors import ConfigError
from networks._embedding_rows import PATH, EmbeddingRowsModule

logger = logging.getLogger(__name__)

FILE_KEY = f"diffusion_model.{PATH}"
TRIGGER_SUFFIX = ".trigger.safetensors"


def dataset_captions(dataset: Any) -> list[str]:
    """Every sample's fixed caption text (what the text cache encodes), the validation set's included."""
    groups = [dataset] + ([dataset.validation] if getattr(dataset, "validation", None) is not None else [])
    return [render_caption(s.item.caption, s.caption_options, None) for g in groups for s in g.all_samples()]


def plan_from_dataset(args: Namespace, tokenizer: Any, dataset: Any) -> TriggerPlan | None:
    """The trigger's plan, checked against the captions and the --network_weights header; None without a trigger."""
    if args.pivotal_trigger is None:
        warn_unused_rows(args)
        return None
    plan = plan_trigger(args.pivotal_trigger, args.pivotal_init_text, tokenizer, dataset_captions(dataset))
    check_file_rows(args, plan)
    return plan


def _file_rows(file: str | None) -> tuple[list[int], dict[str, str]] | None:
    """(shape of the embedding lora_up, metadata) of a --network_weights .safetensors (already checked readable by
    `check_adapter_file`), or None when it holds no trigger rows."""
    if not file or not str(file).endswith(".safetensors"):
        return None
    with safe_open(str(file), framework="pt") as handle:
        key = f"{FILE_KEY}.lora_up.weight"
        if key not in list(handle.keys()):  # a safe_open handle has no __contains__
            return None
        return list(handle.get_slice(key).get_shape()), dict(handle.metadata() or {})


def warn_unused_rows(args: Namespace) -> None:
    if found := _file_rows(args.network_weights):
        trigger = found[1].get("ss_pivotal_trigger", "<the trigger it was trained with>")
        logger.warning("--network_weights %s holds trained trigger rows (%s) that this run does not load; add "
                       "--pivotal_trigger %s to continue training them.", args.network_weights, trigger, trigger)


def check_file_rows(args: Namespace, plan: TriggerPlan) -> None:
    """A --network_weights file with trigger rows holds as many rows, for the same ids, as this trigger."""
    if (found := _file_rows(args.network_weights)) is None:
        return
    shape, metadata = found
    rows = int(shape[1])
    ids = metadata.get("ss_pivotal_token_ids")
    if rows != len(plan.token_ids) or (ids is not None and sorted(json.loads(ids)) != sorted(plan.token_ids)):
        raise ConfigError(f"--network_weights {args.network_weights}: its trigger rows are for "
                          f"{metadata.get('ss_pivotal_trigger', 'another trigger')!r} ({rows} rows, ids {ids}), "
                          f"but --pivotal_trigger {plan.trigger!r} has ids {plan.token_ids}. Use the file's trigger.")


def init_rows(embedding: torch.nn.Embedding, plan: TriggerPlan) -> torch.Tensor:
    """(k, D) starting rows: the init text's mean embedding for every row (HCP-Diffusion), else the rows as they are."""
    weight = embedding.weight.detach().float()
    if plan.init_ids is None:
        return weight[plan.token_ids].clone()
    return weight[plan.init_ids].mean(dim=0, keepdim=True).expand(len(plan.token_ids), -1).clone()


def attach_trigger_rows(args: Namespace, network: Any, dit: torch.nn.Module, plan: TriggerPlan) -> EmbeddingRowsModule:
    """Add the trigger's rows to `network` (before --network_weights loads), and its standalone file to each save."""
    embedding = dit.llm_adapter.embed
    module = EmbeddingRowsModule(embedding, plan.token_ids, init_rows(embedding, plan), args.pivotal_train_steps,
                                 args.gradient_accumulation_steps, args.pivotal_lr)
    network.add_adapter(module)
    logger.info("pivotal tuning: %d rows of llm_adapter.embed train (%d parameters), lr %s, %s", module.rank,
                module.delta.numel(), args.pivotal_lr if args.pivotal_lr is not None else "the network's",
                f"for the first {args.pivotal_train_steps} steps" if args.pivotal_train_steps else "every step")
    network.after_save.append(lambda file: save_trigger_file(file, plan, module))
    return module


def pivotal_metadata(args: Namespace, plan: TriggerPlan | None) -> dict[str, str]:
    """`ss_pivotal_*` keys of the LoRA file: the trigger, its T5 ids and pieces (row order), how it was trained."""
    if plan is None:
        return {}
    meta = {"ss_pivotal_trigger": plan.trigger, "ss_pivotal_token_ids": json.dumps(plan.token_ids),
            "ss_pivotal_pieces": json.dumps(plan.pieces, ensure_ascii=False)}
    for name in ("pivotal_init_text", "pivotal_lr", "pivotal_train_steps"):
        if getattr(args, name) is not None:
            meta[f"ss_{name}"] = str(getattr(args, name))
    return meta


def trigger_file(lora_file: str | Path) -> Path:
    """`<name>.trigger.safetensors` beside `<name>.safetensors` (or `.pt`)."""
    path = Path(lora_file)
    return path.with_name(path.stem + TRIGGER_SUFFIX)


@torch.no_grad()
def save_trigger_file(lora_file: str, plan: TriggerPlan, module: EmbeddingRowsModule) -> None:
    """The rows on their own, fp32, for other tools: `rows` (k, D) = base row + delta, `token_ids`, `delta`.
    Copies whose LoRA file has been removed (kept-files retention) go with it."""
    base = module.org_module.weight.detach()[module.token_ids].float().cpu()
    delta = module.delta.detach().float().cpu()
    tensors = {"rows": base + delta, "delta": delta, "token_ids": module.token_ids.cpu()}
    metadata = {"format": TRIGGER_FILE_FORMAT, "trigger": plan.trigger, "token_ids": json.dumps(plan.token_ids),
                "pieces": json.dumps(plan.pieces, ensure_ascii=False), "lora_file": Path(lora_file).name}
    target = trigger_file(lora_file)
    save_safetensors_atomic(tensors, target, metadata)
    for old in target.parent.glob(f"*{TRIGGER_SUFFIX}"):
        stem = old.name[: -len(TRIGGER_SUFFIX)]
        if not any((old.parent / f"{stem}{ext}").exists() for ext in (".safetensors", ".pt", ".ckpt")):
            old.unlink(missing_ok=True)
