"""A validation loss that can be read: deterministic, and far less noisy than a training loss.

Most of a diffusion loss's noise comes from the random timestep. Here every held-out image is
scored at the same stratified grid of K timesteps, with noise keyed by (seed, image, slot) and
the latent's mean (no sampling), with augmentations and caption dropout off. The same weights
give the same number bit for bit (on CPU); no global RNG is touched, so training's own random
state is left exactly as it was. The same measure on a fixed subset of the training images is
the "stabilised training loss" (as EveryDream2 calls it): held-out rising while it falls is
over-fitting.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch

from ..models.adapter import add_noise, target_for
from . import keyed_rng
from .dist import Processes, reduce_sums
from .latent_cache import BucketLatents

Bucket = Tuple[int, int]


def timestep_grid(k: int, T: int) -> List[int]:
    """K timesteps, one in the middle of each of K equal strata of [0, T)."""
    return [int((j + 0.5) * T / k) for j in range(k)]


@torch.no_grad()
def fixed_grid_loss(adapter, latents: Dict[Bucket, BucketLatents], prompts: Dict[int, str], seed: int, k: int,
                    subset: Sequence[int] = (), batch: int = 16, procs: Processes = Processes()) -> float:
    """Mean loss over every (image, grid timestep) pair; `subset` limits the images (dataset indices).
    Several processes split the pairs (every `world`-th from `rank`) and sum their parts: each pair's
    noise is keyed by its image and slot, so the mean is the same whatever the process count."""
    T = adapter.alphas_cumprod.shape[0]
    grid = timestep_grid(k, T)
    dtype = next(adapter.unet().parameters()).dtype
    total, count = 0.0, 0
    keep = set(subset)
    everything = [(bucket, r, j) for bucket, bl in sorted(latents.items())
                  for r, i in enumerate(bl.items) if not keep or i in keep for j in range(k)]
    mine = everything[procs.rank::procs.world]
    for bucket in sorted({b for b, _, _ in mine}):
        bl = latents[bucket]
        pairs = [(r, j) for b, r, j in mine if b == bucket]
        for s in range(0, len(pairs), batch):
            chunk = pairs[s:s + batch]
            r_idx = torch.tensor([r for r, _ in chunk], device=adapter.device)
            items = [bl.items[r] for r, _ in chunk]
            keys = torch.tensor([i * k + j for i, (_, j) in zip(items, chunk)], device=adapter.device)
            t = torch.tensor([grid[j] for _, j in chunk], device=adapter.device, dtype=torch.long)
            x0 = bl.mean[r_idx]
            noise = keyed_rng.normal(seed, keyed_rng.VALIDATION, keys, x0.shape[1:])
            noisy = add_noise(adapter.alphas_cumprod, x0, noise, t)
            cond = adapter.encode_prompts([prompts[i] for i in items])
            pred = adapter.predict(noisy.to(dtype), t, cond.to(dtype)).float()
            target = target_for(adapter, adapter.prediction_type, x0, noise, t)
            total += torch.nn.functional.mse_loss(pred, target.float(), reduction="sum").item() / x0[0].numel()
            count += len(chunk)
    total, count = reduce_sums(procs, [total, float(count)])
    return total / max(1, count)


def stable_subset(n_train: int, seed: int, size: int = 16) -> List[int]:
    """A fixed subset of training images for the stabilised training loss."""
    import random
    idx = list(range(n_train))
    random.Random(f"stable-{seed}").shuffle(idx)
    return sorted(idx[:size])
