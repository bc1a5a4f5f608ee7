"""tools/convert_anima_root_to_kohya.py: an old root-style TOML becomes kohya train args + dataset.toml that our
own parser and dataset schema load, with the old file's meaning kept and every dropped key reported."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import toml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import convert_anima_root_to_kohya as converter  # noqa: E402
from _root_lora import target_regex  # noqa: E402

from anima_train_network import AnimaNetworkTrainer  # noqa: E402
from library.args import parse_args  # noqa: E402
from library.dataset.schema import load_dataset_config  # noqa: E402
from library.metadata import parse_network_args  # noqa: E402
from networks._args import parse_patterns  # noqa: E402

# Every key of root-config.md §3 and §7 (R's example values where it has them), plus F-only keys.
FULL = """
[model]
transformer_path = "models/anima.safetensors"
vae_path = "/abs/qwen_image_vae.safetensors"
text_encoder_path = "models/qwen3"
t5_tokenizer_path = "models/t5"

[dataset]
data_dir = "train"
resolution = 1024
min_reso = 512
max_reso = 1536
reso_step = 64
max_ar = 3.0
repeats = 3
shuffle_caption = true
shuffle_caption_per_epoch = true
keep_tokens = 1
keep_tokens_separator = "|||"
caption_extension = ".txt"
flip_augment = true
cache_latents = true
cache_dir = "cache"

[lora]
lora_name = "from_lora_name"
network_type = "lokr"
lora_rank = 64
lora_alpha = 64
lora_dropout = 0.0
lora_targets = "q_proj,mlp.layer1,re:cross_attn\\\\..*_proj"
anima_target_preset = "v101"
lokr_factor = 4
lokr_use_tucker = true
lokr_decompose_both = true
lokr_full_matrix = true
lokr_rank_dropout = 0.1
lokr_module_dropout = 0.05
lokr_constraint = 0.5
lokr_normalize = true

[training]
epochs = 5
max_steps = 0
batch_size = 8
grad_accum = 4
grad_clip = 1.5
learning_rate = 1e-4
mixed_precision = "fp32"
grad_checkpoint = true
num_workers = 2
persistent_data_loader_workers = true
seed = 7
xformers = true
resume = "output/anima_lora_epoch3.state.pt"
text_cache_size = 256
seq_len = 384
noise_offset = 0.05
caption_tag_dropout_rate = 0.1
log_every = 10
train_parts = "dit_only"
auto_install = true
interactive = true
max_token_length = 512
lr_scheduler = "cosine"
lr_min_ratio = 0.1
lr_warmup_ratio = 0.05
lr_scheduler_num_cycles = 0.5

[optimizer]
type = "prodigy"
weight_decay = 0.02
beta1 = 0.9
beta2 = 0.99
eps = 1e-7
prodigy_beta3 = 0.98
prodigy_d0 = 1e-5
prodigy_d_coef = 2.0
prodigy_growth_rate = 1.02
prodigy_slice_p = 11
prodigy_decouple = false
prodigy_use_bias_correction = false
prodigy_safeguard_warmup = false

[output]
output_dir = "./output"
output_name = "my_lokr"
save_every = 2
save_state = true
save_state_every = 5
comfyui_format = true

[progress]
loss_curve_steps = 100
no_progress = false

[monitor]
enabled = true
every = 5

[wandb]
enabled = true
project = "anima"
entity = "me"
name = "run1"
group = "g"
tags = ["a", "b"]
mode = "offline"
log_every = 1
"""

EXPECTED_UNMAPPED = {
    "dataset.max_ar", "dataset.cache_dir", "dataset.shuffle_caption_per_epoch", "lora.lokr_use_tucker",
    "lora.lokr_constraint", "lora.lokr_normalize", "training.resume", "training.seq_len", "training.max_token_length",
    "training.auto_install", "training.interactive", "training.text_cache_size",
    "training.log_every", "output.save_state_every", "progress", "monitor", "wandb.entity", "wandb.group",
    "wandb.tags", "wandb.mode", "wandb.log_every",
}


@pytest.fixture
def old_config(tmp_path: Path) -> Path:
    """The full file beside a data_dir with N_name folders (one nested), a plain folder and a hidden cache."""
    for folder in ("train/10_alice", "train/10_alice/extra", "train/5_bob/sub", "train/plain", "train/.cache"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "img.png").write_bytes(b"png")
    path = tmp_path / "old.toml"
    path.write_text(FULL, encoding="utf-8")
    return path


def _convert(path: Path, out: Path, *extra: str) -> tuple[dict, dict, str]:
    assert converter.main(["--input", str(path), "--output_dir", str(out), *extra]) == 0
    text = (out / "train_args.toml").read_text(encoding="utf-8")
    return toml.loads(text), toml.load(out / "dataset.toml"), text


def test_full_config_maps_every_known_key(old_config: Path, tmp_path: Path) -> None:
    args, dataset, _ = _convert(old_config, tmp_path / "out")
    base = old_config.parent.resolve()
    assert args["pretrained_model_name_or_path"] == str(base / "models/anima.safetensors")
    assert args["vae"] == "/abs/qwen_image_vae.safetensors"
    assert args["qwen3"] == str(base / "models/qwen3")
    assert args["t5_tokenizer_path"] == str(base / "models/t5")
    assert (args["network_module"], args["network_dim"], args["network_alpha"]) == ("networks.lokr_anima", 64, 64.0)
    assert "network_dropout" not in args
    assert args["network_args"] == [
        "include_patterns=['(?:.*\\\\.)?q_proj', '(?:.*\\\\.)?mlp\\\\.layer1', '.*(?:cross_attn\\\\..*_proj).*']",
        "exclude_patterns=['.*']", "factor=4", "full_matrix=true", "decompose_both=true", "rank_dropout=0.1",
        "module_dropout=0.05", "train_llm_adapter=false"]
    assert args["network_train_unet_only"] is True  # dit_only trained no Qwen3 LoRA; kohya's rule would train one
    assert args["output_dir"] == str(base / "output") and args["output_name"] == "my_lokr"
    assert args["save_every_n_epochs"] == 2 and "save_every_n_steps" not in args  # epochs, as the old trainer
    assert args["save_state"] is True
    assert args["max_train_epochs"] == 5 and "max_train_steps" not in args
    assert (args["gradient_accumulation_steps"], args["learning_rate"], args["max_grad_norm"]) == (4, 1e-4, 1.5)
    assert args["mixed_precision"] == "no"  # fp32
    assert args["gradient_checkpointing"] and args["persistent_data_loader_workers"]
    assert (args["max_data_loader_n_workers"], args["seed"]) == (2, 7)
    assert args["xformers"] and "split_attn" not in args  # breaks caught: split_attn written with xformers again,
    assert args["anima_noise_offset"] == 0.05  # and the old noise_offset skipped instead of mapped
    assert args["lr_scheduler"] == "cosine_with_min_lr" and args["lr_scheduler_min_lr_ratio"] == 0.1
    assert args["lr_warmup_steps"] == 0.05 and args["lr_scheduler_num_cycles"] == 0.5
    assert (args["timestep_sampling"], args["sigmoid_scale"], args["discrete_flow_shift"]) == ("shift", 1.0, 3.0)
    assert args["optimizer_type"] == "Prodigy"
    assert args["optimizer_args"] == [
        "weight_decay=0.02", "betas=(0.9,0.99)", "eps=1e-07", "beta3=0.98", "d0=1e-05", "d_coef=2.0",
        "growth_rate=1.02", "slice_p=11", "decouple=False", "use_bias_correction=False", "safeguard_warmup=False"]
    assert args["cache_latents"] is True
    assert (args["log_with"], args["log_tracker_name"], args["wandb_run_name"]) == ("wandb", "anima", "run1")
    assert args["dataset_config"] == str((tmp_path / "out" / "dataset.toml").resolve())
    assert dataset["general"] == {"shuffle_caption": True, "keep_tokens": 1, "keep_tokens_separator": "|||",
                                  "caption_extension": ".txt", "flip_aug": True, "caption_tag_dropout_rate": 0.1}
    entry = dataset["datasets"][0]
    assert {k: v for k, v in entry.items() if k != "subsets"} == {
        "batch_size": 8, "resolution": 1024, "enable_bucket": True, "min_bucket_reso": 512, "max_bucket_reso": 1536,
        "bucket_reso_steps": 64}


def test_n_name_folders_set_repeats_recursively(old_config: Path, tmp_path: Path) -> None:
    _, dataset, text = _convert(old_config, tmp_path / "out")
    train = old_config.parent.resolve() / "train"
    repeats = {s["image_dir"]: s["num_repeats"] for s in dataset["datasets"][0]["subsets"]}
    assert repeats == {str(train / "10_alice"): 10, str(train / "10_alice/extra"): 10, str(train / "5_bob/sub"): 5,
                       str(train / "plain"): 1}  # .cache skipped; repeats = 3 unused once N_name folders exist
    assert "dataset.repeats = 3 is not used" in text and str(train / "plain") in text


def test_without_n_name_folders_repeats_applies(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"jpg")
    path = tmp_path / "old.toml"
    path.write_text('[model]\n[training]\n[dataset]\ndata_dir = "imgs"\nrepeats = 4\n', encoding="utf-8")
    _, dataset, _ = _convert(path, tmp_path / "out")
    assert dataset["datasets"][0]["subsets"] == [{"image_dir": str(tmp_path.resolve() / "imgs"), "num_repeats": 4}]


def test_unmapped_keys_are_printed_and_written_with_reasons(
    old_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, text = _convert(old_config, tmp_path / "out")
    printed = capsys.readouterr().out
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    listed = {line.split(":")[0].strip() for line in printed.split("Not converted:\n")[1].splitlines()
              if line.startswith("  ")}
    assert listed == EXPECTED_UNMAPPED
    for key in EXPECTED_UNMAPPED:
        assert f"#   {key}: " in header
    assert "a .pt file cannot become" in printed and "network_weights" in printed


def test_absent_keys_take_the_old_trainers_defaults(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text('[model]\n[training]\nmax_steps = 10\nepochs = 16\n[dataset]\ndata_dir = "x"\n',
                    encoding="utf-8")
    args, dataset, text = _convert(path, tmp_path / "out")
    assert args["max_train_steps"] == 10 and "max_train_epochs" not in args
    assert (args["network_module"], args["network_dim"], args["network_alpha"]) == ("networks.lora_anima", 32, 16.0)
    assert (args["learning_rate"], args["seed"], args["mixed_precision"], args["max_grad_norm"]) == (5e-5, 42, "bf16",
                                                                                                     0.0)
    assert (args["output_name"], args["save_state"], args["optimizer_type"]) == ("anima_lora", True, "AdamW")
    assert args["optimizer_args"] == ["weight_decay=0.01", "betas=(0.9,0.999)", "eps=1e-08"]
    assert dataset["general"]["caption_extension"] == ".txt"
    assert dataset["datasets"][0]["resolution"] == 1024
    assert "#   network_dim = 32 (lora.lora_rank)" in text
    assert "has no images yet" in text


def test_outputs_load_with_our_parser_and_schema(old_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _convert(old_config, out)
    args = parse_args(AnimaNetworkTrainer().setup_parser(), ["--config_file", str(out / "train_args.toml")])
    assert args.network_dim == 64 and args.save_every_n_epochs == 2 and args.lr_scheduler == "cosine_with_min_lr"
    config = load_dataset_config(str(args.dataset_config))
    assert len(config["datasets"][0]["subsets"]) == 4


def test_refuses_to_overwrite_without_force(
    old_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    _convert(old_config, out)
    (out / "train_args.toml").write_text("mine", encoding="utf-8")
    assert converter.main(["--input", str(old_config), "--output_dir", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err and (out / "train_args.toml").read_text() == "mine"
    _convert(old_config, out, "--force")


@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "file not found"), ("[model]\n", "not a root-style Anima TOML"), ("[model\n", "not valid TOML"),
     ("[model]\n[training]\n", "data_dir is not set"),
     ('[model]\n[training]\nmixed_precision = "fp8"\n[dataset]\ndata_dir = "x"\n', "expected bf16, fp16 or fp32")],
)
def test_errors_name_the_file_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, message: str
) -> None:
    path = tmp_path / "old.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    assert converter.main(["--input", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "old.toml" in err
    assert not (tmp_path / "out").exists()


def test_target_names_become_full_match_regexes(old_config: Path, tmp_path: Path) -> None:
    args, _, _ = _convert(old_config, tmp_path / "out")
    include = parse_patterns(parse_network_args(args["network_args"])["include_patterns"], "include_patterns")
    assert [bool(p.fullmatch("blocks.1.cross_attn.k_proj")) for p in include] == [False, False, True]
    assert include[0].fullmatch("llm_adapter.blocks.0.self_attn.q_proj")
    assert re.fullmatch(target_regex("q_proj"), "blocks.0.self_attn.q_proj")
    assert not re.fullmatch(target_regex("q_proj"), "blocks.0.self_attn.q_proj_x")
    assert re.fullmatch(target_regex("transformer.blocks.*.mlp.layer1"), "blocks.3.mlp.layer1")
    assert re.fullmatch(target_regex("re:attn\\.o"), "llm_adapter.blocks.0.self_attn.o_proj")


def test_lora_path_reports_keys_of_other_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.toml"
    path.write_text('[model]\n[lora]\nnetwork_type = "LoRA"\nlora_dropout = 0.1\nlokr_factor = 4\n'
                    'anima_target_preset = "v2"\n[training]\ntrain_parts = "dit_llm_adapter_qwen"\nlr_scheduler = "cosine"\n'
                    '[optimizer]\ntype = "AdamW8Bit"\nprodigy_d0 = 1e-5\nbeta1 = 0.8\n[dataset]\ndata_dir = "x"\n'
                    "[extra]\nfoo = 1\n", encoding="utf-8")
    args, _, _ = _convert(path, tmp_path / "out")
    assert (args["network_module"], args["network_dropout"]) == ("networks.lora_anima", 0.1)
    assert (args["optimizer_type"], args["lr_scheduler"]) == ("AdamW8bit", "cosine")
    assert "network_args" not in args and "lr_scheduler_min_lr_ratio" not in args
    assert args["optimizer_args"] == ["weight_decay=0.01", "betas=(0.8,0.999)", "eps=1e-08"]  # old beta2 default
    printed = capsys.readouterr().out
    assert "network_train_unet_only" not in args  # dit_llm_adapter_qwen: kohya's rule trains the Qwen3 LoRA too
    for key in ("lora.lokr_factor", "lora.anima_target_preset", "optimizer.prodigy_d0", "extra"):
        assert f"  {key}: " in printed
