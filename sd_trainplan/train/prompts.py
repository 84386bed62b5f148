"""Prompts per sample and their text conditioning, cached when nothing makes them change.

Tag shuffle and caption dropout are decided per global sample index (a seeded choice), so a
sample's prompt is the same however the run is split or resumed.
"""
from __future__ import annotations

import random
from typing import Dict, Optional, Sequence

import torch

from .config import TrainConfig
from .data import ImageItem, file_words, render_prompt, shuffle_tags


class Prompts:
    def __init__(self, cfg: TrainConfig, items: Sequence[ImageItem], name: str, fresh_text: bool):
        self.cfg, self.items, self.name = cfg, items, name
        templates = [cfg.instance_prompt] + [c.instance_prompt for c in cfg.concepts]
        self.templates = templates
        self.cacheable = not (fresh_text or cfg.shuffle_tags or cfg.caption_dropout > 0)
        self._cond: Optional[torch.Tensor] = None

    def base_prompt(self, i: int) -> str:
        it = self.items[i]
        return render_prompt(self.templates[it.concept], self.name, it.caption, file_words(it.path) or "")

    def prompt(self, i: int, key: int) -> str:
        """The prompt of dataset item i when drawn as global sample `key`."""
        cfg = self.cfg
        it = self.items[i]
        rng = random.Random(f"prompt-{cfg.seed}-{key}")
        if cfg.caption_dropout and rng.random() < cfg.caption_dropout:
            return ""
        caption = it.caption
        if cfg.shuffle_tags and caption:
            caption = shuffle_tags(caption, cfg.keep_tokens, rng)
        return render_prompt(self.templates[it.concept], self.name, caption, file_words(it.path) or "")

    def build_cache(self, adapter, batch: int = 16) -> None:
        """Encode every item's fixed prompt once (only when prompts never change)."""
        if not self.cacheable:
            return
        texts = [self.base_prompt(i) for i in range(len(self.items))]
        with torch.no_grad():
            chunks = [adapter.encode_prompts(texts[s:s + batch]) for s in range(0, len(texts), batch)]
        self._cond = torch.cat(chunks)

    def cached(self, items: torch.Tensor) -> torch.Tensor:
        """Conditioning of dataset items (an index tensor on the device), from the cache."""
        return self._cond[items]


def fixed_prompts(cfg: TrainConfig, items: Sequence[ImageItem], name: str) -> Dict[int, str]:
    """Validation prompts: no shuffle, no dropout."""
    p = Prompts(cfg, items, name, fresh_text=True)
    return {i: p.base_prompt(i) for i in range(len(items))}
