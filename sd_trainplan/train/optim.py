"""Optimizers: AdamW (adamw.py: torch's fused kernel on CUDA, its foreach arithmetic elsewhere, without
torch.optim's import of torch._dynamo), 8-bit AdamW through bitsandbytes when it is installed
(offered, never forced), and a registry to plug in others."""
from __future__ import annotations

from typing import Callable, Dict, List

import torch

REGISTRY: Dict[str, Callable] = {}


def register(name: str):
    def deco(fn):
        REGISTRY[name] = fn
        return fn
    return deco


class OptimizerUnavailable(RuntimeError):
    pass


@register("adamw")
def adamw(groups: List[dict], lr: float, weight_decay: float, device: torch.device):
    from .adamw import AdamW
    return AdamW(groups, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8)


@register("adamw8bit")
def adamw8bit(groups: List[dict], lr: float, weight_decay: float, device: torch.device):
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise OptimizerUnavailable("optimizer: adamw8bit needs the bitsandbytes package, which is not installed;"
                                   " install it yourself (pip install bitsandbytes) or use adamw") from None
    if device.type != "cuda":
        raise OptimizerUnavailable("optimizer: adamw8bit runs on CUDA GPUs only; use adamw on this device")
    return bnb.optim.AdamW8bit(groups, lr=lr, weight_decay=weight_decay)


def build_optimizer(name: str, groups: List[dict], lr: float, weight_decay: float, device: torch.device):
    if name not in REGISTRY:
        raise OptimizerUnavailable(f"optimizer: unknown {name!r}; choose from {', '.join(REGISTRY)}")
    for g in groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
        g.setdefault("weight_decay", weight_decay)
    return REGISTRY[name](groups, lr, weight_decay, device)


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
