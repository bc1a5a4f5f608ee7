"""`[model]`, `[output]`, `[training]` and the logging tables of a root-style file -> kohya train args.

Meaning first (README decision 9): `save_every` counted epochs, `fp32` means no autocast, `grad_clip = 0`
meant no clipping, and the old trainer drew noise levels logit-normally with a flow shift of 3.
"""

from __future__ import annotations

from pathlib import Path

from _root_mapping import Section

from library.errors import ConfigError
from library.registries.schedulers import SCHEDULERS

PRECISIONS = {"bf16": "bf16", "fp16": "fp16", "fp32": "no", "no": "no"}
NO_TRUNCATION = "captions are never truncated here (as in ComfyUI, where the LoRA is used), so there is no length to set"


def map_model(section: Section) -> None:
    conv, args = section.conv, section.conv.train_args
    for key, target in (("transformer_path", "pretrained_model_name_or_path"), ("vae_path", "vae"),
                        ("text_encoder_path", "qwen3")):
        if section.has(key):
            args[target] = conv.path(section.get(key), section.key(key))
    for key in ("t5_tokenizer_path", "t5_tokenizer_dir"):
        if section.has(key):
            args["t5_tokenizer_path"] = conv.path(section.get(key), section.key(key))


def map_output(section: Section, lora_name: str | None) -> None:
    conv, args = section.conv, section.conv.train_args
    output_dir = section.get("output_dir")
    if output_dir is None:
        output_dir = conv.default("output_dir", "./output", section.key("output_dir"))
    args["output_dir"] = conv.path(output_dir, section.key("output_dir"))
    name = section.get("output_name", lora_name)
    args["output_name"] = name if name is not None else conv.default("output_name", "anima_lora", "output.output_name")
    every = section.value("save_every", int)
    if every:
        args["save_every_n_epochs"] = every  # the old trainer counted epochs here, not steps
    args["save_state"] = section.value("save_state", bool, "save_state", True)
    if section.value("save_state_every", int):
        conv.skip(section.key("save_state_every"), "state-only saves every N epochs do not exist in kohya; "
                  "save_state = true writes a state folder with every save_every_n_epochs save and at the end")
    if section.value("comfyui_format", bool) is False:
        conv.skip(section.key("comfyui_format"), "files are always written with ComfyUI keys (diffusion_model.*)")


def _schedule(section: Section) -> None:
    conv, args = section.conv, section.conv.train_args
    scheduler = section.get("lr_scheduler")
    min_ratio = section.value("lr_min_ratio", float)
    if scheduler is not None:
        name = str(scheduler).strip().lower()
        if name == "cosine" and min_ratio:
            name = "cosine_with_min_lr"
        if name not in SCHEDULERS.names():
            conv.skip(section.key("lr_scheduler"), f"unknown schedule {scheduler!r}; valid: "
                      f"{', '.join(SCHEDULERS.names())}")
        else:
            args["lr_scheduler"] = name
    if min_ratio and args.get("lr_scheduler") in ("cosine_with_min_lr", "warmup_stable_decay"):
        args["lr_scheduler_min_lr_ratio"] = min_ratio
    elif min_ratio:
        conv.skip(section.key("lr_min_ratio"), "only used by the cosine schedule")
    steps = section.value("lr_warmup_steps", int)
    ratio = section.value("lr_warmup_ratio", float)
    if steps is not None:
        args["lr_warmup_steps"] = steps
    elif ratio:
        args["lr_warmup_steps"] = ratio  # a float < 1 is a fraction of the training steps
    cycles = section.get("lr_scheduler_num_cycles")
    if cycles is not None:
        args["lr_scheduler_num_cycles"] = cycles if isinstance(cycles, int) else section.value(
            "lr_scheduler_num_cycles", float)


def _length(section: Section) -> None:
    conv, args = section.conv, section.conv.train_args
    max_steps = section.value("max_steps", int)
    if max_steps and max_steps > 0:
        args["max_train_steps"] = max_steps
        if section.has("epochs"):
            conv.notes.append("training.max_steps is set, so training.epochs is not used (the run stops at "
                              "max_train_steps).")
    else:
        args["max_train_epochs"] = section.value("epochs", int, "max_train_epochs", 1)


def _resume(section: Section) -> None:
    conv = section.conv
    resume = section.get("resume")
    if resume is None:
        return
    path = Path(conv.path(resume, section.key("resume")))
    if path.is_dir():
        conv.train_args["resume"] = str(path)
        return
    conv.skip(section.key("resume"), f"{resume!r} is the old trainer's single .pt state file; kohya resumes from "
              "a state folder (save_state), which a .pt file cannot become. To keep the trained weights, set "
              "network_weights to the LoRA .safetensors saved at that point (optimizer state and step count "
              "start fresh), or train again")


def _parts(section: Section) -> None:
    """The old trainer's `train_parts`. Only `dit_llm_adapter_qwen` trained a Qwen3 LoRA; kohya's rule trains one
    whenever text outputs are not cached, so the other choices say --network_train_unet_only."""
    parts = section.get("train_parts")
    if parts in (None, "dit_llm_adapter", "dit_only"):
        section.conv.train_args["network_train_unet_only"] = True
        if parts == "dit_only":
            section.conv.network_args.append("train_llm_adapter=false")
    elif parts != "dit_llm_adapter_qwen":
        section.conv.skip(section.key("train_parts"), f"unknown value {parts!r} (dit_only, dit_llm_adapter, "
                          "dit_llm_adapter_qwen)")


def map_training(section: Section) -> None:
    conv, args = section.conv, section.conv.train_args
    _length(section)
    batch = section.value("batch_size", int)
    if batch is not None:
        conv.dataset["batch_size"] = batch
    for key, kind, target, r_default in (
        ("grad_accum", int, "gradient_accumulation_steps", None),
        ("learning_rate", float, "learning_rate", 5e-5),
        ("grad_clip", float, "max_grad_norm", 0.0),  # 0 = no clipping, in both trainers
        ("grad_checkpoint", bool, "gradient_checkpointing", None),
        ("num_workers", int, "max_data_loader_n_workers", 0),
        ("persistent_data_loader_workers", bool, "persistent_data_loader_workers", None),
        ("seed", int, "seed", 42),
    ):
        value = section.value(key, kind, target, r_default)
        if value is not None:
            args[target] = value
    precision = str(section.get("mixed_precision") or conv.default("mixed_precision", "bf16",
                                                                    "training.mixed_precision")).lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"{conv.source}: training.mixed_precision = {precision!r}: expected bf16, fp16 or fp32.")
    args["mixed_precision"] = PRECISIONS[precision]
    if section.value("xformers", bool):
        args["xformers"] = True  # root-config.md: xformers -> xformers; the trainer runs it as SDPA and says so
    rate = section.value("caption_tag_dropout_rate", float)
    if rate is not None:
        conv.general["caption_tag_dropout_rate"] = rate
    _schedule(section)
    _resume(section)
    _parts(section)
    for key in ("seq_len", "max_token_length"):
        if section.has(key):
            conv.skip(section.key(key), NO_TRUNCATION)
    offset = section.value("noise_offset", float)
    if offset:  # root-config.md: the seed's option of the same formula (library/anima/flow.py offset_noise)
        args["anima_noise_offset"] = offset
    for key, why in (("auto_install", "install the requirements yourself (pip install -r requirements.txt)"),
                     ("interactive", "there are no interactive prompts here")):
        if section.value(key, bool):
            conv.skip(section.key(key), why)
    for key, why in (("text_cache_size", "the old in-memory caption cache; set cache_text_encoder_outputs = true "
                                         "to encode every caption once"),
                     ("log_every", "loss is logged every step (console, and trackers with log_with)")):
        if section.has(key):
            conv.skip(section.key(key), why)
    # The old trainer drew sigma = sigmoid(N(0, 1)) and shifted it by 3; our Anima default is unshifted.
    sampling = "the old trainer's noise sampling; delete for this project's unshifted default"
    args["timestep_sampling"] = conv.default("timestep_sampling", "shift", sampling)
    args["sigmoid_scale"] = 1.0
    args["discrete_flow_shift"] = conv.default("discrete_flow_shift", 3.0, sampling)


def map_logging(section: Section, name: str) -> None:
    """[wandb] maps when enabled; [progress] and [monitor] were console/health displays with no kohya option."""
    conv, args, table = section.conv, section.conv.train_args, section.table
    if name != "wandb":
        conv.skip(name, "console progress and health-monitor settings of the old trainer; kohya shows a "
                  "progress bar and logs to trackers (log_with)")
        section.used.update(table)
        return
    if not section.value("enabled", bool):
        section.used.update(table)  # logging was off; nothing to carry over
        return
    args["log_with"] = "wandb"
    for key, target in (("project", "log_tracker_name"), ("name", "wandb_run_name")):
        if section.has(key):
            args[target] = str(section.get(key))
    for key in ("entity", "group", "tags", "mode", "log_every"):
        if section.has(key):
            conv.skip(section.key(key), "put wandb init settings in a TOML file passed as log_tracker_config")
