"""Encode every image once: the VAE's latent mean and std per image (and its mirror image when
flips are on), grouped by bucket and kept on the device. Each training step then draws its
latent sample from these with a keyed random number, so caching changes no result."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .data import ImageItem
from .images import load_pixels

Bucket = Tuple[int, int]


@dataclass
class BucketLatents:
    items: List[int]                 # indices into the dataset's item list
    mean: torch.Tensor               # [n, C, h, w]
    std: torch.Tensor
    flip_mean: Optional[torch.Tensor] = None
    flip_std: Optional[torch.Tensor] = None


def encode_items(adapter, items: Sequence[ImageItem], with_flip: bool, batch: int = 0,
                 progress: Optional[Callable[[int, int], None]] = None) -> Dict[Bucket, BucketLatents]:
    """Batches of `batch` images (default: 4 at 256 px and below, 1 above, so the VAE's
    activations never outgrow what training itself needs)."""
    by_bucket: Dict[Bucket, List[int]] = {}
    for i, it in enumerate(items):
        by_bucket.setdefault(it.bucket, []).append(i)
    out: Dict[Bucket, BucketLatents] = {}
    done = 0
    for bucket, idx in sorted(by_bucket.items()):
        means, stds, fmeans, fstds = [], [], [], []
        batch_b = batch or (4 if bucket[0] * bucket[1] <= 256 * 256 else 1)
        for start in range(0, len(idx), batch_b):
            chunk = idx[start:start + batch_b]
            pixels = torch.stack([load_pixels(items[i].path, bucket) for i in chunk]).to(adapter.device)
            m, s = adapter.encode_images(pixels)
            means.append(m)
            stds.append(s)
            if with_flip:
                m, s = adapter.encode_images(pixels.flip(-1))
                fmeans.append(m)
                fstds.append(s)
            done += len(chunk)
            if progress:
                progress(done, len(items))
        out[bucket] = BucketLatents(idx, torch.cat(means), torch.cat(stds),
                                    torch.cat(fmeans) if with_flip else None, torch.cat(fstds) if with_flip else None)
    if adapter.device.type == "cuda":
        torch.cuda.empty_cache()  # the VAE's activations are not needed again
    return out
