"""GEGLU (h * gelu(gate) on the two halves of one projection) in one pass, forward and backward.

PyTorch runs it as `chunk` then GELU then a multiply: the halves are views with a row stride twice
their width, which its elementwise kernels take through their unvectorised path, and the backward
writes each half's gradient separately before they are put side by side (about 1.3 ms of a 44 ms
SD1.5 LoRA update on the H200: bench/profile_update.py --stacks). The kernel (geglu_triton.py) reads
each row of the projection once and writes the output once; the backward writes [dh | dgate] as the
projection's gradient directly. On by default in a graphed update (triton_gate.py)."""
from __future__ import annotations

import functools

import torch

from . import triton_gate

ROWS, COLS = 32, 128  # a tile: rows x output columns (fixed, not per layer)


def applies(p: torch.Tensor) -> bool:
    return p.is_contiguous() and p.shape[-1] % 2 == 0 and triton_gate.usable(p, "geglu")


def geglu(p: torch.Tensor) -> torch.Tensor:
    """h * F.gelu(gate) for h, gate = p.chunk(2, -1) (see `applies`)."""
    return _Geglu.apply(p)


class _Geglu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p):
        grid, rows, inner = _geometry(p)
        y = p.new_empty(*p.shape[:-1], inner)
        _kernels().forward[grid](p, y, rows, inner, ROWS=ROWS, COLS=COLS)
        ctx.save_for_backward(p)
        return y

    @staticmethod
    def backward(ctx, dy):
        (p,) = ctx.saved_tensors
        grid, rows, inner = _geometry(p)
        dp = torch.empty_like(p)
        _kernels().backward[grid](p, dy.contiguous(), dp, rows, inner, ROWS=ROWS, COLS=COLS)
        return dp


def _geometry(p: torch.Tensor):
    """The kernels' grid, the projection's rows and the output's width."""
    inner, rows = p.shape[-1] // 2, p.numel() // p.shape[-1]
    return (-(-rows // ROWS), -(-inner // COLS)), rows, inner


@functools.lru_cache(maxsize=None)
def _kernels():
    from . import geglu_triton  # imported at the first use: importing triton costs a second
    return geglu_triton
