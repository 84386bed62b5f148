"""Count the training images in a dataset folder (pure Python, no gradio).

The folder is read on the machine that runs the app (inside the WebUI: the WebUI's
machine). Only the folder itself is counted, as the WebUI's Train tab and the
diffusers examples read it; same-name .txt files are captions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..train.data import IMAGE_EXTS, list_images  # the trainer's own notion of an image file


@dataclass(frozen=True)
class FolderCount:
    path: str                       # the folder as resolved (absolute, ~ expanded)
    images: Optional[int] = None    # None when the folder cannot be read
    by_extension: Dict[str, int] = field(default_factory=dict)
    captions: int = 0
    subfolder_images: int = 0       # images one level down (not counted; kohya keeps them there)
    problem: str = ""               # why there is no count

    @property
    def ok(self) -> bool:
        return self.images is not None and not self.problem

    def summary(self) -> str:
        """One line for the page."""
        if self.problem:
            return self.problem
        if not self.images:
            text = f"No images ({', '.join(e[1:] for e in IMAGE_EXTS)}) in {self.path}."
            if self.subfolder_images:
                text += (f" Its subfolders hold {self.subfolder_images}: point to the folder that holds the"
                         " images (for kohya's '10_token class' folders, the numbered folder).")
            return text
        kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(self.by_extension.items(), key=lambda kv: -kv[1]))
        text = f"{self.images} image{'s' if self.images != 1 else ''} ({kinds})"
        if self.captions:
            text += f", {self.captions} with a .txt caption"
        return text + f" in {self.path}."


def count_images(path: str) -> FolderCount:
    """Count image files directly in `path`; say plainly why not when it is not a readable folder."""
    text = (path or "").strip().strip('"').strip("'")
    if not text:
        return FolderCount("", problem="")
    full = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(full):
        return FolderCount(full, problem=f"The folder {full} does not exist (on the machine running this app).")
    if not os.path.isdir(full):
        return FolderCount(full, problem=f"{full} is a file, not a folder.")
    by_ext: Dict[str, int] = {}
    stems = set()
    texts = set()
    sub = 0
    try:
        with os.scandir(full) as entries:
            for e in entries:
                stem, ext = os.path.splitext(e.name)
                ext = ext.lower()
                if e.is_dir():
                    sub += _count_flat(e.path)
                elif ext in IMAGE_EXTS:
                    by_ext[ext[1:]] = by_ext.get(ext[1:], 0) + 1
                    stems.add(stem)
                elif ext == ".txt":
                    texts.add(stem)
    except OSError as e:
        return FolderCount(full, problem=f"Cannot read {full}: {e.strerror or e}.")
    return FolderCount(full, sum(by_ext.values()), by_ext, len(stems & texts), sub)


def _count_flat(folder: str) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTS)
    except OSError:
        return 0


def image_sizes(folder: str) -> Tuple[Tuple[int, int], ...]:
    """(width, height) of every readable image directly in `folder`, from the files' headers (no
    pixels decoded); unreadable files are left out (the trainer names them). Cached until the
    folder's listing changes."""
    try:
        stamp = os.stat(folder).st_mtime_ns
    except OSError:
        return ()
    return _sizes(folder, stamp)


@lru_cache(maxsize=16)
def _sizes(folder: str, stamp: int) -> Tuple[Tuple[int, int], ...]:
    from PIL import Image
    try:
        paths = list_images(Path(folder))
    except OSError:
        return ()
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(im.size)
        except (OSError, ValueError):
            continue
    return tuple(out)
