"""What a run shows and where its files go (issue 24 point 7): --output_name is a name, caching shows progress,
a bf16 run on a CPU is warned about, and the end-of-run summary lists every file, says how to use the LoRA in
ComfyUI, labels its loss window and is the last thing printed."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
from _launch import free_port, launch_env
from _tiny_run import REPO, reset_accelerate, tiny_model, train

from library.accelerator_setup import make_accelerator
from library.run_summary import LISTED, saved_line, training_summary

NAME = "anima_tiny_lora"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def test_an_output_name_with_a_folder_is_refused_at_start_up(tiny: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """It was printed as OUT/sub/dir/name.safetensors and written as OUT/name.safetensors. Caught: no
    check_output_name call in input_checks.check_inputs (the run trains), or one that misses the backslash."""
    for name, fix in (("sub/dir/name", "sub/dir --output_name name"), ("sub\\name", "sub --output_name name")):
        with pytest.raises(SystemExit) as stopped:
            train(tiny, tmp_path / "out", "--output_name", name)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert f"error: --output_name {name!r}: a name, not a path" in err and fix in err, err
        assert "caching" not in err, "refused before any model loads"
    assert not list((tmp_path / "out").rglob("*.safetensors"))


def test_caching_shows_progress_and_the_summary_lists_every_file_and_comes_last(
        tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """One stream (stderr sent to stdout), so the order shows. Caught: no `progress` bar in caching.py's latent or
    text pass; the loop's bar closed after `_finish` (train_loop.run: its last line printed again below the
    summary); `saved_along_the_way` not listing the step files or states; the ComfyUI line gone."""
    monkeypatch.setattr(sys, "stderr", sys.stdout)
    out = train(tiny, tmp_path / "out", "--max_train_steps", "3", "--save_every_n_steps", "1", "--save_state")
    text = capsys.readouterr().out
    assert re.search(r"caching latents: 100%.* 12/12 \[", text), text[-3000:]
    assert re.search(r"caching captions: 100%.* 5/5 \[", text), text[-3000:]
    summary = text[text.index("training summary"):]
    assert "steps:" not in summary.replace("  steps: 3 (this run: 3)", ""), "the step bar came after the summary"
    assert re.search(r"steps: 100%.*3/3 \[", text[:text.index("training summary")])
    listed = [line.strip() for line in summary.splitlines() if line.startswith("    ")]
    for step in (1, 2, 3):
        assert str(out / f"{NAME}-step{step:08d}.safetensors") in listed
        assert str(out / f"{NAME}-step{step:08d}-state") in listed
    assert str(out / f"{NAME}.safetensors") in listed and str(out / f"{NAME}-loss.csv") in listed
    assert f"put {NAME}.safetensors into ComfyUI/models/loras/ and load it with a LoraLoaderModelOnly node" in summary
    assert f"training finished: 3 steps. LoRA saved to {out / NAME}.safetensors" in text


def test_the_summary_labels_its_loss_window_and_counts_what_it_does_not_list(tmp_path: Path) -> None:
    """The mean over one epoch, full windows only: the first value was the first step's loss alone, labelled as an
    average of the window. Caught: dropping `[width - 1:]` in loss_line (first 0.4000), or the span labels."""
    final = tmp_path / "x.safetensors"
    for step in range(1, LISTED + 3):
        (tmp_path / f"x-step{step:08d}.safetensors").touch()
    (tmp_path / "x-other-step00000001.safetensors").touch()  # another output_name's file: not ours
    rows = [(1, 0.4), (2, 0.2), (3, 0.1), (4, 0.3)]
    text = training_summary(rows, 2, epochs=2, wall_seconds=3725, steps_this_run=2, loop_seconds=5.0, final=final,
                            files=[tmp_path / "x-loss.csv", None])
    assert "steps: 4 (this run: 2), epochs: 2" in text
    assert ("loss, mean over 2 steps (one epoch): first 0.3000 (steps 1-2), last 0.2000 (steps 3-4), "
            "lowest 0.1500 (steps 2-3)") in text
    assert "1:02:05, 2.50 s/step" in text and f"    {final}\n    {tmp_path / 'x-loss.csv'}\n" in text
    assert f"(2 older ones in {tmp_path})" in text and "x-other" not in text
    assert str(tmp_path / f"x-step{LISTED + 2:08d}.safetensors") in text
    assert str(tmp_path / "x-step00000002.safetensors") not in text
    short = training_summary(rows[:1], 2, epochs=1, wall_seconds=1, steps_this_run=1, loop_seconds=1, final=final,
                             files=[])
    assert "mean over all 1 steps (less than one epoch of 2): first 0.4000 (step 1)" in short


def test_with_two_machines_only_the_one_that_writes_the_lora_says_saved(tiny: Path, tmp_path: Path) -> None:
    """2 machines x 1 process on this host: every machine's local main process prints, and the second one said
    "LoRA saved to" a file only the main machine writes. Caught: train_loop._finish passing
    is_local_main_process to saved_line."""
    out, port = tmp_path / "out", str(free_port())
    machines = [subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
         "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", port,
         "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "anima_train_network.py"), "--config_file",
         str(tiny / "train_args.toml"), "--output_dir", str(out), "--max_train_steps", "1"],
        cwd=REPO, env=launch_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = [machine.communicate(timeout=240)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    final = out / f"{NAME}.safetensors"
    assert logs[0].count(f"training finished: 1 steps. LoRA saved to {final}") == 1, logs[0][-2000:]
    assert "LoRA saved to" not in logs[1], logs[1][-2000:]
    assert f"The main machine (process 0) saved the LoRA to {final} on its disk" in logs[1]
    assert saved_line(False, 1, final) in logs[1] and "training summary" not in logs[1]


@pytest.mark.parametrize(("precision", "warned"), [("bf16", True), ("fp16", True), ("no", False)])
def test_half_precision_on_a_cpu_is_warned_about_once(precision: str, warned: bool,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """4 images at 1024x1024 in bf16 took 8 silent minutes to cache on a CPU. Caught: the warning removed from
    make_accelerator, or given for float32 too."""
    args = Namespace(ddp_timeout=None, ddp_gradient_as_bucket_view=False, ddp_static_graph=False,
                     mixed_precision=precision, log_with=None, logging_dir=None)
    reset_accelerate()
    try:
        with caplog.at_level(logging.WARNING, logger="library.accelerator_setup"):
            make_accelerator(args)
    finally:
        reset_accelerate()
    messages = [r.getMessage() for r in caplog.records if "slower than float32" in r.getMessage()]
    assert len(messages) == (1 if warned else 0), caplog.text
    if warned:
        assert messages[0].startswith(f"--mixed_precision {precision} on the CPU") and "--mixed_precision no" in messages[0]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
