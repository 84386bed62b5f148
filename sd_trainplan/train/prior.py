"""Dreambooth prior preservation: class images (generated with the model when too few exist),
encoded once, and their loss added with `prior_loss_weight`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from . import keyed_rng as rng
from .atomic import atomic_write
from .batches import class_rows
from .data import list_images, scan_folder
from .images import to_pil
from .latent_cache import encode_items
from .sampling import ddim_sample

CLASS_KEY_OFFSET = 1 << 40  # class samples draw their own noise, not their instance twin's


class PriorPreservation:
    def __init__(self, cfg, adapter, latents, cond: Optional[torch.Tensor]):
        self.cfg, self.adapter = cfg, adapter
        (self.bucket, self.bl), = latents.items()
        self.cond = cond

    @staticmethod
    def folder(cfg, run_dir: Path) -> Path:
        return Path(cfg.class_data).expanduser() if cfg.class_data else Path(run_dir) / "class_images"

    @classmethod
    def generate(cls, cfg, adapter, run_dir: Path, emit) -> None:
        """Sample the class images that are missing (with the model being trained, before training)."""
        folder = cls.folder(cfg, run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        have = len(list_images(folder))
        missing = cfg.num_class_images - have
        for start in range(0, max(0, missing), 4):
            n = min(4, missing - start)
            emit("prepare", message=f"generating class images {have + start + n}/{cfg.num_class_images}")
            imgs = ddim_sample(adapter, [cfg.class_prompt] * n, (cfg.resolution, cfg.resolution),
                               seed=cfg.seed * 100003 + have + start, steps=cfg.sample_steps, cfg_scale=cfg.sample_cfg)
            for j, img in enumerate(imgs):
                pil = to_pil(img)
                atomic_write(folder / f"class-{have + start + j:05d}.png", lambda tmp: pil.save(tmp, format="PNG"))

    @classmethod
    def build(cls, cfg, adapter, run_dir: Path) -> "PriorPreservation":
        folder = cls.folder(cfg, run_dir)
        items, _ = scan_folder(str(folder), cfg.resolution, buckets=False, skip_bad=cfg.skip_bad_images,
                               field="class_data")
        items = items[:cfg.num_class_images]
        latents = encode_items(adapter, items, with_flip=False)
        cond = None
        if not cfg.train_text_encoder:
            with torch.no_grad():
                cond = adapter.encode_prompts([cfg.class_prompt])
        return cls(cfg, adapter, latents, cond)

    def loss(self, keys, diffusion_loss) -> torch.Tensor:
        rows = torch.tensor(class_rows(keys, len(self.bl.items), self.cfg.seed), device=self.adapter.device)
        k = torch.tensor([CLASS_KEY_OFFSET + x for x in keys], device=self.adapter.device)
        mean, std = self.bl.mean[rows], self.bl.std[rows]
        x0 = mean + std * rng.normal(self.cfg.seed, rng.LATENT, k, mean.shape[1:])
        cond = self.cond.expand(len(keys), -1, -1) if self.cond is not None else \
            self.adapter.encode_prompts([self.cfg.class_prompt] * len(keys))
        return diffusion_loss(x0, k, cond)
