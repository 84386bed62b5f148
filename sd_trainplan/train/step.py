"""One weight update as tensor functions: what a micro-batch is (decided on the host from the
update index), its loss (a function of index tensors only), and the optimizer update.

Because the loss depends only on index tensors, the same code runs eagerly or, on CUDA, is
captured once per bucket shape and replayed (cuda_graph.py): the results are the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from ..models.adapter import add_noise, target_for
from . import keyed_rng as rng


@dataclass
class MicroBatch:
    bucket: Tuple[int, int]
    rows: List[int]          # rows of the bucket's latent tensors
    keys: List[int]          # global sample indices
    items: List[int]         # dataset item indices (for cached conditioning)
    prompts: List[str]


class StepMath:
    def __init__(self, cfg, adapter, latents, prompts, prior, order, procs, autocast):
        self.cfg, self.adapter, self.latents, self.prompts = cfg, adapter, latents, prompts
        self.prior, self.order, self.procs, self.autocast = prior, order, procs, autocast
        self.T = adapter.alphas_cumprod.shape[0]
        self.dtype = next(adapter.unet().parameters()).dtype
        self.device = adapter.device
        # prompts as token ids on the device (capturable) when the adapter can encode ids
        self.use_ids = not prompts.cacheable and getattr(adapter, "encodes_ids", False)
        # several GPUs: average the gradients in bf16 (half the bytes on the wire) unless told not to
        bf16 = cfg.grad_reduce == "bf16" or (cfg.grad_reduce == "auto" and self.device.type == "cuda")
        self.reduce_dtype = torch.bfloat16 if bf16 else None

    def micro(self, u: int, m: int) -> MicroBatch:
        sl = self.order.micro(u, m, self.procs.rank, self.cfg.batch_size, self.procs.world)
        items = [self.latents[sl.bucket].items[r] for r in sl.positions]
        texts = [] if self.prompts.cacheable else [self.prompts.prompt(i, k) for i, k in zip(items, sl.keys)]
        return MicroBatch(sl.bucket, list(sl.positions), list(sl.keys), items, texts)

    def tensors(self, mb: MicroBatch, pinned: bool = False):
        """(rows, keys, items, ids): on the device, or (pinned=True) in pinned host memory for an
        asynchronous copy into a CUDA graph's buffers. ids is None when conditioning is cached or
        the adapter encodes text itself."""
        ids = self.adapter.tokenize(mb.prompts).cpu() if self.use_ids else None
        out = (torch.tensor(mb.rows), torch.tensor(mb.keys), torch.tensor(mb.items), ids)
        if pinned:
            return tuple(t.pin_memory() if t is not None else None for t in out)
        return tuple(t.to(self.device) if t is not None else None for t in out)

    def cond(self, mb_prompts: Optional[List[str]], items: torch.Tensor, ids: Optional[torch.Tensor]):
        if self.prompts.cacheable:
            return self.prompts.cached(items)
        if ids is not None:
            return self.adapter.encode_ids(ids)
        return self.adapter.encode_prompts(mb_prompts)

    def loss(self, bucket, rows: torch.Tensor, keys: torch.Tensor, items: torch.Tensor,
             ids: Optional[torch.Tensor], texts: Optional[List[str]] = None) -> torch.Tensor:
        """The micro-batch's loss (not divided by GA); a function of these tensors alone."""
        cfg, bl = self.cfg, self.latents[bucket]
        mean, std = bl.mean[rows], bl.std[rows]
        if cfg.flip > 0:
            flip = (rng.uniform(cfg.seed, rng.FLIP, keys) < cfg.flip).view(-1, 1, 1, 1)
            mean, std = torch.where(flip, bl.flip_mean[rows], mean), torch.where(flip, bl.flip_std[rows], std)
        x0 = mean + std * rng.normal(cfg.seed, rng.LATENT, keys, mean.shape[1:])
        loss = self.diffusion_loss(x0, keys, self.cond(texts, items, ids))
        if self.prior is not None:
            loss = loss + cfg.prior_loss_weight * self.prior.loss(keys.tolist(), self.diffusion_loss)
        return loss

    def diffusion_loss(self, x0: torch.Tensor, keys: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cfg, adapter = self.cfg, self.adapter
        noise = rng.normal(cfg.seed, rng.NOISE, keys, x0.shape[1:])
        if cfg.noise_offset:
            noise = noise + cfg.noise_offset * rng.normal(cfg.seed, rng.NOISE + 100, keys, (x0.shape[1], 1, 1))
        t = rng.integers(cfg.seed, rng.TIMESTEP, keys, self.T)
        with self.autocast():
            pred = adapter.predict(add_noise(adapter.alphas_cumprod, x0, noise, t).to(self.dtype), t,
                                   cond.to(self.dtype))
        target = target_for(adapter, adapter.prediction_type, x0, noise, t)
        per_sample = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none").mean((1, 2, 3))
        if cfg.min_snr_gamma:
            a = adapter.alphas_cumprod[t]
            snr = a / (1 - a)
            w = torch.clamp(snr, max=cfg.min_snr_gamma) / (snr + 1 if adapter.prediction_type == "v_prediction" else snr)
            per_sample = per_sample * w
        return per_sample.mean()

    def eager_micro(self, u: int, m: int) -> torch.Tensor:
        mb = self.micro(u, m)
        rows, keys, items, ids = self.tensors(mb)
        return self.loss(mb.bucket, rows, keys, items, ids, mb.prompts)


def optimizer_update(opt, trainable, max_grad_norm: float, scaler=None, set_to_none: bool = True) -> None:
    """Clip, step, zero: the part of an update after the gradients are in."""
    if scaler is not None:
        scaler.unscale_(opt)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm, foreach=True)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=set_to_none)


Loss = Callable[..., torch.Tensor]
