"""The GPU started in a thread while the model code is imported and the weights are read (issue 16):
its context, and the libraries that cuDNN and cuBLAS load at their first convolution, matrix product
and attention, forward and backward (a second or more the first time a machine runs them, from a
slow disk). PyTorch's operators release the GIL, so this overlaps the imports.

Nothing random is drawn (the run's random streams stay exactly as they were) and what it allocates
goes back to the caching allocator at once.
"""
from __future__ import annotations

import threading
from typing import Optional

import torch
import torch.nn.functional as F


def half_dtype(device: torch.device) -> torch.dtype:
    """The 16-bit dtype a run computes in on `device`: bf16 where the GPU has it (and on a CPU), else fp16."""
    return torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16


def first_kernels(device: torch.device) -> None:
    """The context and the libraries' first kernels, in the dtypes a run computes in here."""
    torch.cuda.init()
    with torch.cuda.device(device):
        half = half_dtype(device)
        for dtype in (half, torch.float32):
            x = torch.ones(1, 8, 16, 16, device=device, dtype=dtype, requires_grad=True)
            w = torch.ones(8, 8, 3, 3, device=device, dtype=dtype, requires_grad=True)
            q = torch.ones(1, 2, 64, 64, device=device, dtype=dtype, requires_grad=True)
            lin = torch.ones(64, 64, device=device, dtype=dtype, requires_grad=True)
            out = F.conv2d(x, w, padding=1).sum() + F.scaled_dot_product_attention(q, q, q).sum() \
                + (q @ lin).sum()
            out.backward()
        triton_kernels(device, half)
        torch.cuda.synchronize(device)


def triton_kernels(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """Where a run may use our Triton kernels (models/triton_gate.py, on by default in a graphed
    update): each compiled and run once here, on one small shape, rather than in the first update,
    which is also the proof the default waits for. Variants for other kinds of integer arguments
    (group_norm_nhwc.py) still compile in the first update. None, or the problem."""
    from ..models import triton_gate
    if not triton_gate.may_run():
        return None  # SD_TRAINPLAN_TRITON=off, or no Triton 3: nothing to compile, nothing to allocate
    return triton_gate.prove(lambda: _call_kernels(device, dtype))


def _call_kernels(device: torch.device, dtype: torch.dtype) -> None:
    from ..models import geglu_fused, group_norm_nhwc
    x = torch.ones(1, 320, 8, 8, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    if group_norm_nhwc.applies(x, 32):
        for trained in (True, False):  # the norm's weights trained (Dreambooth) or frozen (LoRA, TI)
            w = torch.ones(320, device=device, dtype=dtype, requires_grad=trained)
            group_norm_nhwc.group_norm_nhwc(x.detach().requires_grad_(), 32, w, w, 1e-5).sum().backward()
    p = torch.ones(64, 2 * 320, device=device, dtype=dtype, requires_grad=True)
    if geglu_fused.applies(p):
        geglu_fused.geglu(p).sum().backward()
    from . import bf16_weights
    bf16_weights.try_kernels(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # a kernel that fails to run fails here, not in the update


def _quietly(device: torch.device) -> None:
    try:
        first_kernels(device)
    except Exception:  # noqa: BLE001 - only a head start: the run itself meets (and reports) any real problem
        pass


def start_gpu(device: torch.device) -> threading.Thread:
    """Start the context and the libraries on `device` in a daemon thread (returned, already running)."""
    t = threading.Thread(target=_quietly, args=(device,), name="start the GPU", daemon=True)
    t.start()
    return t
