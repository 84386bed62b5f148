"""Which dtype a run computes in (autocast) and whether it scales the loss.

'auto' computes in bf16 wherever the GPU has it, also on the WebUI's fp16 weights: bf16 needs no loss
scaling, so the update can be replayed from a CUDA graph (measured 4.1x the WebUI Train tab's speed on
its own model class). Two exceptions compute in fp16 with loss scaling, as the WebUI's own trainer
does: a GPU without bf16, and the low-VRAM option (gradient checkpointing) on fp16 weights. There,
bf16 autocast casts every fp16 weight to bf16 for each layer, and the casts a layer's backward needs
are kept until it runs: a second copy of the UNet in bf16 (about 5 GiB at SDXL size) that fp16
autocast over fp16 weights never makes (docs/PERFORMANCE.md, the SDXL low-VRAM row). The price is
the CUDA graph (loss scaling checks for overflow on the host), which the low-VRAM option gives up
for memory anyway. Elsewhere fp32.
"""
from __future__ import annotations

import contextlib

import torch

from .config import TrainConfig


def autocast_for(cfg: TrainConfig, device: torch.device, weights: torch.dtype = torch.float32):
    """(context factory, GradScaler or None). Mixed precision keeps fp32 master weights."""
    dtype = _precision(cfg, device, weights)
    if dtype == torch.float32:
        return contextlib.nullcontext, None
    scaler = _grad_scaler() if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def _grad_scaler():
    """torch.amp's (2.3 and later; torch.cuda.amp's is deprecated there), else torch.cuda.amp's (the WebUI's 2.1)."""
    amp = getattr(torch, "amp", None)
    if amp is not None and hasattr(amp, "GradScaler"):
        return amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def _precision(cfg: TrainConfig, device: torch.device, weights: torch.dtype) -> torch.dtype:
    precision = cfg.precision
    if precision == "auto":
        if device.type == "cuda" and weights == torch.float16 and cfg.gradient_checkpointing:
            precision = "fp16"
        elif device.type == "cuda" and torch.cuda.is_bf16_supported():
            precision = "bf16"
        elif device.type == "cuda" and weights == torch.float16:
            precision = "fp16"
        else:
            precision = "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def compute_dtype(cfg: TrainConfig, device: torch.device, adapter) -> torch.dtype:
    """The dtype autocast computes in for this run (fp32: no autocast)."""
    return _precision(cfg, device, getattr(adapter, "dtype", torch.float32))
