"""Loaded at start-up by every process of a test's `accelerate launch` (tests/_launch.py puts this folder first on
PYTHONPATH and names a folder in ANIMA_TEST_PROBE_DIR): each call of `torch.distributed.destroy_process_group`
leaves a file there, so a test can assert that no worker tore its process group down before its os._exit. That
teardown can hang a worker for ever after training (library/signals.py `end_run`)."""

import os

_FOLDER = os.environ.get("ANIMA_TEST_PROBE_DIR")

if _FOLDER:
    import torch.distributed as _dist

    _original = _dist.destroy_process_group

    def _recording_destroy(*args: object, **kwargs: object) -> None:
        with open(os.path.join(_FOLDER, f"destroy_process_group.{os.getpid()}"), "w", encoding="utf-8") as handle:
            handle.write(os.environ.get("RANK", "?"))
        _original(*args, **kwargs)

    _dist.destroy_process_group = _recording_destroy
