"""Which dtype a run computes in (autocast) and whether it scales the loss.

'auto' computes in bf16 wherever the GPU has it, also on the WebUI's fp16 weights: bf16 needs no loss
scaling, so the update can be replayed from a CUDA graph (measured 4.1x the WebUI Train tab's speed on
its own model class). On a GPU without bf16, fp16 weights train in fp16 autocast with loss scaling, as
the WebUI's own trainer does; elsewhere in fp32.

The low-VRAM option (gradient checkpointing) keeps bf16 too. Computing in fp16 on the WebUI's fp16
SDXL weights, to spare bf16 casts of them, was measured (H200, 1024 px, LoRA BS 1,
bench/results/2026-11-30-NVIDIA_H200-sdxl-lowvram.json): 1004 ms per update, eager (loss scaling
checks for overflow on the host, so no CUDA graph), against 199 ms in bf16 with graphs, and no less
memory (11.51 against 11.70 GiB at peak). Under checkpointing the casts live one block at a time;
what brought that run under 12 GiB is offload.py.
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
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            precision = "bf16"
        elif device.type == "cuda" and weights == torch.float16:
            precision = "fp16"
        else:
            precision = "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def compute_dtype(cfg: TrainConfig, device: torch.device, adapter) -> torch.dtype:
    """The dtype autocast computes in for this run (fp32: no autocast)."""
    return _precision(cfg, device, getattr(adapter, "dtype", torch.float32))
