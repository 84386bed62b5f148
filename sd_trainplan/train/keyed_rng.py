"""Random numbers keyed by (seed, stream, global sample index), computed on the device.

Noise, timesteps, latent samples and augmentation choices for a sample depend only on the
run's seed and the sample's global index, never on how many processes, micro-batches or
resumes produced it. So a run on 2 processes sees exactly the samples of a run on 1, and a
resumed run continues exactly where it stopped. Counter-based (a 32-bit integer hash per
element, then Box-Muller), so it needs no generator state and can be captured in a CUDA graph.
"""
from __future__ import annotations

import math

import torch

MASK = 0xFFFFFFFF
# stream ids: one independent sequence per use
NOISE, TIMESTEP, LATENT, FLIP, DROPOUT, VALIDATION = 1, 2, 3, 4, 5, 6


def _mix(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 integer hash (Wellons), on int64 tensors holding 32-bit values."""
    x = x & MASK
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK
    return x ^ (x >> 16)


def _bits(seed: int, stream: int, keys: torch.Tensor, n: int, salt: int) -> torch.Tensor:
    """[B, n] 32-bit hashes of (seed, stream, key, element, salt)."""
    keys = keys.to(torch.int64).view(-1, 1)
    idx = torch.arange(n, device=keys.device, dtype=torch.int64).view(1, -1)
    h = _mix(torch.full_like(keys, (seed * 0x9E3779B1 + stream * 0x85EBCA77 + salt) & MASK))
    h = _mix(h ^ _mix(keys))
    return _mix(h ^ idx)


def uniform(seed: int, stream: int, keys: torch.Tensor, n: int = 1, salt: int = 0) -> torch.Tensor:
    """[B, n] floats in (0, 1), float32."""
    b = _bits(seed, stream, keys, n, salt)
    return ((b >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))


def normal(seed: int, stream: int, keys: torch.Tensor, shape, dtype=torch.float32) -> torch.Tensor:
    """[B, *shape] standard normal numbers (Box-Muller on two keyed uniforms)."""
    n = int(math.prod(shape))
    u1 = uniform(seed, stream, keys, n, salt=0x1234567)
    u2 = uniform(seed, stream, keys, n, salt=0x7654321)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.view(-1, *shape).to(dtype)


def integers(seed: int, stream: int, keys: torch.Tensor, high: int) -> torch.Tensor:
    """[B] integers in [0, high)."""
    return (uniform(seed, stream, keys, 1)[:, 0] * high).to(torch.int64).clamp_(max=high - 1)
