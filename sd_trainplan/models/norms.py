"""Normalisation layers that compute in bf16 while the rest of the step runs under bf16 autocast
(outside autocast they are the plain layers they were).

Autocast runs GroupNorm and LayerNorm in fp32: each norm turns its bf16 input into an fp32 copy,
writes an fp32 output, the SiLU after it runs in fp32, and the next convolution casts it back to
bf16, forward and backward. On the SD1.5 UNet at BS 16 that traffic was the largest block of GPU
time after the matrix work (profile: bench/profile_step.py). PyTorch's bf16 norm kernels still
accumulate the mean and variance in fp32, and what comes out is rounded to the bf16 the next
convolution reads anyway; only the elementwise ops between them (SiLU, residual adds) now round to
bf16 too, as they do everywhere else in the block.

Standalone models only: the WebUI's loaded model keeps its own modules untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import group_norm_nhwc


def _cast(t, dtype):
    return None if t is None else t.to(dtype)


def _in_autocast(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Only inside autocast to `dtype`: outside it (validation, sampling) a Dreambooth UNet keeps
    fp32 weights, and a bf16 norm output would meet an fp32 convolution."""
    return torch.is_autocast_enabled(x.device.type) and torch.get_autocast_dtype(x.device.type) == dtype


def _group_norm(m: nn.GroupNorm, dtype: torch.dtype, x: torch.Tensor) -> torch.Tensor:
    if not _in_autocast(x, dtype):
        return F.group_norm(x, m.num_groups, m.weight, m.bias, m.eps)  # nn.GroupNorm's own forward
    with torch.autocast(x.device.type, enabled=False):
        x, weight, bias = x.to(dtype), _cast(m.weight, dtype), _cast(m.bias, dtype)
        if group_norm_nhwc.applies(x, m.num_groups):  # channels-last in, channels-last out (no NCHW copies)
            return group_norm_nhwc.group_norm_nhwc(x, m.num_groups, weight, bias, m.eps)
        return F.group_norm(x, m.num_groups, weight, bias, m.eps)


def _layer_norm(m: nn.LayerNorm, dtype: torch.dtype, x: torch.Tensor) -> torch.Tensor:
    if not _in_autocast(x, dtype):
        return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)  # nn.LayerNorm's own forward
    with torch.autocast(x.device.type, enabled=False):
        return F.layer_norm(x.to(dtype), m.normalized_shape, _cast(m.weight, dtype), _cast(m.bias, dtype), m.eps)


def norms_in(module: nn.Module, dtype: torch.dtype) -> int:
    """Make every GroupNorm and LayerNorm in `module` compute in `dtype`; returns how many. The
    weights stay as they are (an instance attribute replaces `forward`; state dicts are unchanged)."""
    count = 0
    for m in module.modules():
        if type(m) is nn.GroupNorm:
            m.forward = (lambda mod: lambda x: _group_norm(mod, dtype, x))(m)
        elif type(m) is nn.LayerNorm:
            m.forward = (lambda mod: lambda x: _layer_norm(mod, dtype, x))(m)
        else:
            continue
        count += 1
    return count
