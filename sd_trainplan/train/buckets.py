"""Aspect-ratio buckets: each image trains at the bucket (w, h) of about RES x RES pixels whose
aspect ratio is closest to its own, so wide and tall images are not cropped to a square."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Tuple

MAX_UPSCALE = 1.25  # images needing more than this to cover their bucket are rejected as too small


@lru_cache(maxsize=None)
def bucket_sizes(resolution: int) -> Tuple[Tuple[int, int], ...]:
    """(w, h) pairs, multiples of `step`, area <= RES^2, aspect ratios from 1:2 to 2:1."""
    step = 64 if resolution >= 256 else 8
    out = set()
    w = max(step, (resolution // 2) // step * step)
    while w <= resolution * 2:
        h = min(resolution * 2, (resolution * resolution // w) // step * step)
        if h >= step and max(w, h) <= 2 * min(w, h):
            out.add((w, h))
            out.add((h, w))
        w += step
    out.add((resolution, resolution))
    return tuple(sorted(out))


def bucket_for(size: Tuple[int, int], resolution: int) -> Tuple[int, int]:
    aspect = math.log(size[0] / size[1])
    return min(bucket_sizes(resolution), key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def upscale_needed(size: Tuple[int, int], bucket: Tuple[int, int]) -> float:
    """How much the image is enlarged to cover its bucket (1.0 or less: no enlargement)."""
    return max(bucket[0] / size[0], bucket[1] / size[1])
