"""Image files to pixel tensors at their bucket size: resize to cover, then centre-crop."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch


def load_pixels(path: str, bucket: Tuple[int, int]) -> torch.Tensor:
    """[3, h, w] float32 in [-1, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = bucket
        scale = max(w / im.width, h / im.height)
        size = (max(w, round(im.width * scale)), max(h, round(im.height * scale)))
        im = im.resize(size, Image.BICUBIC)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        im = im.crop((left, top, left + w, top + h))
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def to_pil(pixels: torch.Tensor):
    """[3, h, w] in [-1, 1] -> PIL image."""
    from PIL import Image

    arr = ((pixels.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy())
