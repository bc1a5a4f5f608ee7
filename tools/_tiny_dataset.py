"""A tiny, procedurally drawn training set: four classes of shape/colour, three aspect ratios each.

Each class pairs one shape with one foreground and one background colour, and its caption says exactly
that, so a LoRA that learns anything at all shows it within a few steps. Drawing is seeded, so the same
seed gives byte-identical images.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

from library.atomic import atomic_path, write_text_atomic

# (shape, foreground, background, caption)
CLASSES = (
    ("circle", (220, 30, 30), (30, 60, 200), "a red circle on a blue background"),
    ("square", (240, 220, 40), (30, 140, 60), "a yellow square on a green background"),
    ("triangle", (245, 245, 245), (15, 15, 15), "a white triangle on a black background"),
    ("cross", (150, 40, 170), (250, 150, 40), "a purple cross on an orange background"),
)
SIZES = ((64, 64), (64, 96), (96, 64))  # (width, height) at scale 1


def draw(
    shape: str, fg: tuple[int, int, int], bg: tuple[int, int, int], width: int, height: int, rng: random.Random
) -> Image.Image:
    """One image: the shape, jittered in size and position, filled on a plain background."""
    image = Image.new("RGB", (width, height), bg)
    pen = ImageDraw.Draw(image)
    side = min(width, height)
    radius = side * rng.uniform(0.25, 0.35)
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        pen.ellipse(box, fill=fg)
    elif shape == "square":
        pen.rectangle(box, fill=fg)
    elif shape == "triangle":
        pen.polygon([(cx, cy - radius), (cx + radius, cy + radius), (cx - radius, cy + radius)], fill=fg)
    else:
        bar = radius / 3
        pen.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=fg)
        pen.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=fg)
    return image


def write_dataset(folder: Path, seed: int, scale: int = 1) -> list[Path]:
    """Write 12 PNGs with same-named .txt captions into `folder`; returns the image paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    written = []
    for index, ((shape, fg, bg, caption), (width, height)) in enumerate(
        (cls, size) for cls in CLASSES for size in SIZES
    ):
        image = draw(shape, fg, bg, width * scale, height * scale, rng)
        path = folder / f"{index:02d}_{shape}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        write_text_atomic(path.with_suffix(".txt"), caption)
        written.append(path)
    return written
