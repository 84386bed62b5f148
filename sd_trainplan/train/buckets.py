"""Aspect-ratio buckets: each image trains at the bucket (w, h) of about RES x RES pixels whose
aspect ratio is closest to its own, so wide and tall images are not cropped to a square."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, List, Tuple

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


def training_size(size: Tuple[int, int], resolution: int, buckets: bool = True) -> Tuple[int, int]:
    return bucket_for(size, resolution) if buckets else (resolution, resolution)


def too_small(sizes: Iterable[Tuple[int, int]], resolution: int, buckets: bool = True) -> List[Tuple[int, int]]:
    """The image sizes the trainer refuses at `resolution`: they would need more than MAX_UPSCALE
    enlarging to cover their training size."""
    return [s for s in sizes if upscale_needed(s, training_size(s, resolution, buckets)) > MAX_UPSCALE]


def largest_resolution(sizes: Iterable[Tuple[int, int]], buckets: bool = True, step: int = 8) -> int:
    """A resolution at which none of `sizes` is too small, found by bisection over multiples of
    `step` (larger resolutions mostly grow the training sizes), rounded down to a multiple of 64 from
    256 px on, where the buckets are multiples of 64; 0 when even `step` is too much."""
    unique = set(sizes)
    lo, hi = 0, 4096 // step  # in units of step: lo fits (0: nothing), hi is an upper bound
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if too_small(unique, mid * step, buckets):
            hi = mid - 1
        else:
            lo = mid
    res = lo * step
    if res >= 256 and not too_small(unique, res // 64 * 64, buckets):
        res = res // 64 * 64
    return res
