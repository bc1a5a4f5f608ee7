"""kohya's aspect-ratio buckets, reproduced exactly so a dataset lands in the same buckets as under sd-scripts.

The bucket side must be a multiple of what the model needs (`reso_multiple`: 16 for Anima = VAE stride 8 x patch
2); the trainer passes it, so this file stays model-free.
"""

from __future__ import annotations

import logging
import math

from library.errors import ConfigError

logger = logging.getLogger(__name__)

Reso = tuple[int, int]


def make_bucket_resolutions(max_reso: Reso, min_size: int, max_size: int, divisible: int) -> list[Reso]:
    """All (w, h) with both sides multiples of `divisible` in [min_size, max_size] and area <= max_reso's area."""
    max_area = max_reso[0] * max_reso[1]
    side = int(math.sqrt(max_area) // divisible) * divisible
    resos = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def check_bucket_steps(steps: int, reso_multiple: int, where: str) -> None:
    """The model can only take sides that are multiples of `reso_multiple`."""
    if steps % reso_multiple != 0:
        fixed = max(reso_multiple, round(steps / reso_multiple) * reso_multiple)
        raise ConfigError(f"{where}: bucket_reso_steps is {steps}. it must be divisible by {reso_multiple} for this "
                          f"model; set bucket_reso_steps = {fixed} (64 is the usual value).")


def adjust_min_max(resolution: Reso, min_reso: int, max_reso: int, steps: int, where: str) -> tuple[int, int]:
    """Round min down and max up to multiples of `steps`; both must bracket the resolution."""
    if min_reso % steps:
        adjusted = max(min_reso - min_reso % steps, steps)  # kohya would reach 0 and divide by it
        logger.warning("%s: min_bucket_reso is adjusted to be multiple of bucket_reso_steps: %d -> %d",
                       where, min_reso, adjusted)
        min_reso = adjusted
    if max_reso % steps:
        adjusted = max_reso + steps - max_reso % steps
        logger.warning("%s: max_bucket_reso is adjusted to be multiple of bucket_reso_steps: %d -> %d",
                       where, max_reso, adjusted)
        max_reso = adjusted
    if min(resolution) < min_reso:
        raise ConfigError(f"{where}: min_bucket_reso must be equal or less than resolution: min_bucket_reso "
                          f"{min_reso} > resolution {resolution}. Lower min_bucket_reso to {min(resolution)} or less.")
    if max(resolution) > max_reso:
        raise ConfigError(f"{where}: max_bucket_reso must be equal or greater than resolution: max_bucket_reso "
                          f"{max_reso} < resolution {resolution}. Raise max_bucket_reso to {max(resolution)} or more.")
    return min_reso, max_reso


class BucketManager:
    """Picks a bucket and a cover-resize size for each image (kohya's `BucketManager.select_bucket`)."""

    def __init__(self, resolution: Reso, steps: int, no_upscale: bool = False,
                 predefined: list[Reso] | None = None) -> None:
        self.max_area = resolution[0] * resolution[1]
        self.steps = steps
        self.no_upscale = no_upscale
        self.predefined = list(predefined or [])
        self._predefined_set = set(self.predefined)

    @classmethod
    def bucketing(cls, resolution: Reso, min_reso: int, max_reso: int, steps: int, no_upscale: bool) -> BucketManager:
        if no_upscale:
            return cls(resolution, steps, no_upscale=True)
        return cls(resolution, steps, predefined=make_bucket_resolutions(resolution, min_reso, max_reso, steps))

    @classmethod
    def single(cls, resolution: Reso) -> BucketManager:
        """Bucketing off: one bucket, the resolution itself."""
        return cls(resolution, 1, predefined=[resolution])

    def _round(self, value: float) -> int:
        rounded = int(value + 0.5)
        return rounded - rounded % self.steps

    def select(self, width: int, height: int) -> tuple[Reso, Reso, float]:
        """-> (bucket (w, h), resized size (w, h) before cropping, aspect-ratio error)."""
        aspect = width / height
        if not self.no_upscale:
            reso = (width, height)
            if reso not in self._predefined_set:
                reso = min(self.predefined, key=lambda r: abs(r[0] / r[1] - aspect))  # first on ties
            scale = reso[1] / height if aspect > reso[0] / reso[1] else reso[0] / width
            resized = (int(width * scale + 0.5), int(height * scale + 0.5))
        else:
            if width * height > self.max_area:
                target_w = math.sqrt(self.max_area * aspect)
                target_h = self.max_area / target_w
                w_rounded = max(self._round(target_w), self.steps)
                ar_w = w_rounded / max(self._round(w_rounded / aspect), self.steps)  # max(): kohya divides by 0
                h_rounded = max(self._round(target_h), self.steps)
                ar_h = self._round(h_rounded * aspect) / h_rounded
                if abs(ar_w - aspect) < abs(ar_h - aspect):
                    resized = (w_rounded, int(w_rounded / aspect + 0.5))
                else:
                    resized = (int(h_rounded * aspect + 0.5), h_rounded)
            else:
                resized = (width, height)
            reso = (resized[0] - resized[0] % self.steps, resized[1] - resized[1] % self.steps)
        return reso, resized, reso[0] / reso[1] - aspect


def format_bucket_table(title: str, counts: dict[Reso, int], mean_ar_error: float | None) -> str:
    """kohya's log lines ("bucket N: resolution (w, h), count: n"), for one dataset."""
    lines = [title]
    for i, (reso, count) in enumerate(sorted(counts.items())):
        lines.append(f"  bucket {i}: resolution {reso}, count: {count}")
    if mean_ar_error is not None:
        lines.append(f"  mean ar error (without repeats): {mean_ar_error:.4f}")
    return "\n".join(lines)
