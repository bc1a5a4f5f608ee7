"""kohya-compatible datasets: dataset.toml schema, buckets, captions, images and the batch dataset.

The group (and torch with it) is imported on first use, so the start-up checks can read a dataset.toml through
`library.dataset.blueprint` before torch loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from library.dataset.group import DatasetGroup, build_dataset_group

__all__ = ["DatasetGroup", "build_dataset_group"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from library.dataset import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
