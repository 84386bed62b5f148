"""A small synthetic dataset: coloured shapes on textured backgrounds, with captions.

`python -m sd_trainplan.train.sample_data FOLDER [--size 64] [--colors red,green] [--shapes circle]`
writes PNGs and same-name .txt captions. The demo dataset under samples/ and the test
datasets are made by this script, so the whole workflow runs with no download.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Sequence

COLORS = {"red": (210, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (230, 200, 40)}
SHAPES = ("circle", "square", "triangle")


def draw(shape: str, color, size: int, rng: random.Random, background=None):
    from PIL import Image, ImageDraw
    bg = background or tuple(rng.randint(150, 240) for _ in range(3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    for _ in range(6):  # a little texture so no two images are alike
        x, y = rng.randrange(size), rng.randrange(size)
        d.point((x, y), fill=tuple(max(0, c - 40) for c in bg))
    r = size * rng.uniform(0.25, 0.38)
    cx, cy = size / 2 + rng.uniform(-0.1, 0.1) * size, size / 2 + rng.uniform(-0.1, 0.1) * size
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    return im


def make_shapes(folder, size: int = 64, colors: Sequence[str] = tuple(COLORS), shapes: Sequence[str] = SHAPES,
                per_kind: int = 2, seed: int = 0, captions: bool = True) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for color in colors:
        for shape in shapes:
            for k in range(per_kind):
                stem = f"{color}_{shape}_{k}"
                draw(shape, COLORS[color], size, rng).save(folder / f"{stem}.png")
                if captions:
                    (folder / f"{stem}.txt").write_text(f"{color} {shape}, plain background")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--colors", default=",".join(COLORS))
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    make_shapes(a.folder, a.size, a.colors.split(","), a.shapes.split(","), a.per_kind, a.seed)


if __name__ == "__main__":
    main()
