"""Tests run in the environment pinned like AUTOMATIC1111 1.10 (.venv-a1111: the real ldm code, no
diffusers). Nothing may reach a model hub: HF_HUB_OFFLINE is set before transformers is imported,
and the cache (CLIP tokenizer files, the tiny CLIP folder) starts empty in a temporary folder, so
every file the tiny model needs is proven to be made locally."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
_CACHE = tempfile.mkdtemp(prefix="sdtp-webui-cache-")
os.environ["SD_TRAINPLAN_CACHE"] = _CACHE

import pytest  # noqa: E402

import ldm.models.diffusion.ddpm  # noqa: E402,F401 - these tests need the ldm package (.venv-a1111): fail if not there

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square")


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)


def make_dataset(folder: Path, n: int = 12) -> Path:
    """n 64x64 PNGs of coloured shapes on a grey ground, each with a caption naming colour and shape."""
    from PIL import Image, ImageDraw
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for i in range(n):
        colour, shape = names[i % len(names)], SHAPES[(i // len(names)) % len(SHAPES)]
        img = Image.new("RGB", (64, 64), (128, 128, 128))
        d = ImageDraw.Draw(img)
        box = (8 + 2 * i, 10 + i, 44 + 2 * i, 46 + i)
        (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
        img.save(folder / f"img{i:02d}.png")
        (folder / f"img{i:02d}.txt").write_text(f"a {colour} {shape}")
    return folder


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))
