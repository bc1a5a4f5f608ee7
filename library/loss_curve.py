"""The loss log and its curve: `<output_name>-loss.csv` and a PNG of it beside the LoRA (the text summary is
library/run_summary.py).

Drawn with PIL only (no plotting package to install), from the `<output_name>-loss.csv` the loop keeps, so
the picture covers a resumed run's earlier steps too.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from library.atomic import atomic_path, write_text_atomic

SIZE = (1200, 600)
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 90, 30, 50, 60
RAW_COLOUR, AVERAGE_COLOUR, GRID_COLOUR, AXIS_COLOUR = (150, 190, 235), (20, 60, 160), (225, 225, 225), (0, 0, 0)


def read_loss_csv(path: str | os.PathLike) -> list[tuple[int, float]]:
    """The (step, loss) rows of a `-loss.csv` (header `step,loss`)."""
    rows = list(csv.reader(Path(path).read_text(encoding="utf-8").splitlines()))[1:]
    return [(int(step), float(loss)) for step, loss in rows if step]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last `window` finite values (the loop's `loss/average` is the same idea with
    window = steps per epoch); NaN where none of them is finite yet."""
    result: list[float] = []
    recent: deque[float] = deque(maxlen=max(1, window))
    for value in values:
        if math.isfinite(value):
            recent.append(value)
        result.append(sum(recent) / len(recent) if recent else math.nan)
    return result


def default_window(count: int) -> int:
    """About a twentieth of the run: smooth enough to read a trend, short enough to show a late change."""
    return min(200, max(min(count, 5), count // 20))


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


def _range(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = (high - low) * 0.05 or abs(high) * 0.1 or 1.0
    return low - pad, high + pad


def _segments(points: Sequence[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """Runs of finite points: a NaN loss breaks the line instead of throwing the scale away."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def draw_loss_curve(rows: Sequence[tuple[int, float]], title: str, window: int | None = None,
                    size: tuple[int, int] = SIZE) -> Image.Image:
    """Per-step loss (thin, light) and its moving average (thick, dark), with axes, ticks and a legend;
    `rows` must not be empty."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    steps = [step for step, _ in rows]
    losses = [loss for _, loss in rows]
    window = window or default_window(len(rows))
    averages = moving_average(losses, window)
    x_low, x_high = min(steps), max(max(steps), min(steps) + 1)
    y_low, y_high = _range(losses)
    left, top, right, bottom = MARGIN_LEFT, MARGIN_TOP, width - MARGIN_RIGHT, height - MARGIN_BOTTOM

    def to_pixel(step: float, value: float) -> tuple[float, float]:
        return (left + (step - x_low) / (x_high - x_low) * (right - left),
                bottom - (value - y_low) / (y_high - y_low) * (bottom - top))

    for value in nice_ticks(y_low, y_high):
        y = to_pixel(x_low, value)[1]
        draw.line([(left, y), (right, y)], fill=GRID_COLOUR)
        draw.text((left - 8, y), _label(value), fill=AXIS_COLOUR, font=font, anchor="rm")
    for value in nice_ticks(x_low, x_high):
        x = to_pixel(value, y_low)[0]
        draw.line([(x, top), (x, bottom)], fill=GRID_COLOUR)
        draw.text((x, bottom + 8), f"{value:g}", fill=AXIS_COLOUR, font=font, anchor="mt")
    for values, colour, line_width in ((losses, RAW_COLOUR, 1), (averages, AVERAGE_COLOUR, 3)):
        for run in _segments([to_pixel(s, v) for s, v in zip(steps, values, strict=True)]):
            if len(run) == 1:
                x, y = run[0]
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
            else:
                draw.line(run, fill=colour, width=line_width, joint="curve")
    draw.rectangle([left, top, right, bottom], outline=AXIS_COLOUR)
    draw.text((width / 2, top / 2), title, fill=AXIS_COLOUR, font=ImageFont.load_default(size=18), anchor="mm")
    draw.text(((left + right) / 2, height - 12), "step", fill=AXIS_COLOUR, font=font, anchor="mb")
    draw.text((12, (top + bottom) / 2), "loss", fill=AXIS_COLOUR, font=font, anchor="lm")
    for row, (label, colour) in enumerate((("loss per step", RAW_COLOUR),
                                           (f"moving average ({window} steps)", AVERAGE_COLOUR))):
        y = top + 14 + row * 20
        draw.line([(right - 250, y), (right - 220, y)], fill=colour, width=3)
        draw.text((right - 212, y), label, fill=AXIS_COLOUR, font=font, anchor="lm")
    return image


def write_loss_curve_png(csv_path: str | os.PathLike, png_path: str | os.PathLike, window: int | None = None,
                         size: tuple[int, int] = SIZE) -> Path | None:
    """Draw the CSV's curve to `png_path` (atomic); None when the CSV has no rows (nothing to draw)."""
    rows = read_loss_csv(csv_path)
    if not rows:
        return None
    name = Path(csv_path).name.removesuffix("-loss.csv")
    image = draw_loss_curve(rows, f"{name}: training loss, {len(rows)} steps", window, size)
    with atomic_path(png_path) as tmp:
        image.save(tmp, format="PNG")
    return Path(png_path)


def write_loss_log(path: Path, losses: list[tuple[int, float]]) -> None:
    """`step,loss` rows; `repr` keeps every bit of the float, so a resumed run's log compares exactly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "loss"])
    writer.writerows((step, repr(loss)) for step, loss in losses)
    write_text_atomic(path, buffer.getvalue())
