"""The dataset: a folder of images with optional same-name .txt captions.

Everything is checked before any model work: an empty or missing folder, unreadable or
truncated images, captions without images, images smaller than the training resolution.
Each problem names the file. Unreadable images are skipped only when the user allows it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..plan.inputs import val_images
from .buckets import MAX_UPSCALE, training_size, upscale_needed

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class DataError(ValueError):
    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ImageItem:
    path: str
    caption: str              # the .txt caption, or "" when there is none
    size: Tuple[int, int]     # (width, height) on disk
    bucket: Tuple[int, int]   # (width, height) it is trained at
    concept: int = 0          # index of its concept (0 for the main data folder)


@dataclass(frozen=True)
class Dataset:
    train: Tuple[ImageItem, ...]
    val: Tuple[ImageItem, ...]
    skipped: Tuple[str, ...]


def list_images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def scan_folder(folder: str, resolution: int, buckets: bool, skip_bad: bool, concept: int = 0,
                field: str = "data") -> Tuple[List[ImageItem], List[str]]:
    """Read every image's size and caption; return (items, skipped) or raise DataError."""
    from PIL import Image, UnidentifiedImageError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError([f"{field}: {folder} is not a folder"])
    paths = list_images(root)
    problems, bad, items = [], [], []
    stems = {p.stem for p in paths}
    for txt in sorted(root.glob("*.txt")):
        if txt.stem not in stems:
            problems.append(f"{field}: caption {txt} has no image of the same name")
    if not paths:
        problems.append(f"{field}: {folder} has no images ({', '.join(IMAGE_EXTS)})")
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()  # decodes the pixels: catches truncated files too
                size = im.size
        except (OSError, UnidentifiedImageError, ValueError) as e:
            bad.append(f"{field}: {path} cannot be read ({type(e).__name__}: {e})")
            continue
        bucket = training_size(size, resolution, buckets)
        if upscale_needed(size, bucket) > MAX_UPSCALE:
            problems.append(f"{field}: {path} is {size[0]}x{size[1]}, smaller than its {bucket[0]}x{bucket[1]}"
                            f" training size at {resolution} px; use a lower resolution or a larger image")
            continue
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() if caption_file.is_file() else ""
        items.append(ImageItem(str(path), caption, size, bucket, concept))
    if bad and not skip_bad:
        problems += bad + [f"{field}: {len(bad)} unreadable image(s); remove them or allow skipping (skip_bad_images)"]
    if not items and not problems:
        problems.append(f"{field}: no usable images in {folder}")
    if problems:
        raise DataError(problems)
    return items, [b.split(" cannot be read")[0].split(": ", 1)[1] for b in bad]


def split_validation(items: Sequence[ImageItem], val_split: float, seed: int) -> Tuple[List[ImageItem], List[ImageItem]]:
    """Hold out ceil(N x p) images (the planner's val_images), chosen by a seeded shuffle."""
    n_val = val_images(len(items), val_split)
    if n_val >= len(items) and n_val:
        raise DataError([f"val_split: holds out all {len(items)} images; nothing is left to train on"])
    order = list(range(len(items)))
    random.Random(f"val-split-{seed}").shuffle(order)
    val_idx = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in val_idx], [x for i, x in enumerate(items) if i in val_idx]


def load_dataset(folder: str, resolution: int, buckets: bool, skip_bad: bool, val_split: float, seed: int,
                 extra_folders: Sequence[str] = ()) -> Dataset:
    """The main folder (concept 0) and any extra concept folders; validation comes from every concept."""
    items, skipped = scan_folder(folder, resolution, buckets, skip_bad)
    problems: List[str] = []
    for i, extra in enumerate(extra_folders, start=1):
        try:
            more, sk = scan_folder(extra, resolution, buckets, skip_bad, concept=i, field=f"concepts[{i - 1}].data")
            items += more
            skipped += sk
        except DataError as e:
            problems += e.problems
    if problems:
        raise DataError(problems)
    train, val = split_validation(items, val_split, seed)
    return Dataset(tuple(train), tuple(val), tuple(skipped))


def render_prompt(template: str, token: str, caption: str, fallback_name: str = "") -> str:
    """Prompt templates: [name] -> the token, [filewords] -> the caption (or the file's name)."""
    words = caption or fallback_name
    text = template.replace("[name]", token).replace("[filewords]", words)
    return " ".join(text.split())


def shuffle_tags(caption: str, keep: int, rng: random.Random) -> str:
    """Shuffle comma-separated tags, keeping the first `keep` in place (kohya's keep_tokens)."""
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    head, tail = tags[:keep], tags[keep:]
    rng.shuffle(tail)
    return ", ".join(head + tail)


def file_words(path: str) -> Optional[str]:
    """The WebUI's fallback when there is no caption file: the file name without leading digits."""
    import re
    return re.sub(r"^[\d\-_ ]+", "", Path(path).stem).replace("_", " ").strip() or None
