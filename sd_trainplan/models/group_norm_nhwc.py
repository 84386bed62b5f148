"""GroupNorm on channels-last activations without leaving channels-last (Triton kernels, CUDA only).

PyTorch's CUDA GroupNorm makes a channels-last input NCHW-contiguous, normalises, and hands back an
NCHW output that the next channels-last convolution copies back, forward and backward: on the SD1.5
UNet those unvectorised copies around each of its 61 GroupNorms were about 4 ms of a 44 ms LoRA update
(bench/profile_update.py --eager --stacks). These kernels read and write the NHWC layout as it is.

Forward, x viewed as [N, HW, C] (C = G groups of Cg channels):
  1. _partial_stats: each program takes ROWS pixels of one (sample, group) tile and writes their count,
     mean and centred sum of squares (M2): no E[x^2] - E[x]^2 cancellation.
  2. _finish_stats: per (sample, group), Chan's parallel combination of those partials -> mean, rstd.
  3. _apply: y = x * (rstd * w) + (b - mean * rstd * w), channel by channel.
Backward (xhat = (x - mean) * rstd, g = dy * w, M = HW * Cg):
  1. _partial_grads: per tile, sum(g * xhat) and sum(g) for the group; and per channel, sum(dy * xhat)
     and sum(dy) (dw and db, summed over samples and tiles afterwards).
  2. dx = rstd * (g - (sum(g) + xhat * sum(g * xhat)) / M).
All sums are fp32, in a fixed order (no atomics): the same input gives the same bits. The tile shape
is fixed (constexprs do not depend on the layer), so a kernel compiles once per dtype and kind of
integer argument (Triton specialises on 1 and on multiples of 16: the tile counts 64, 16, 4 and 1
of SD1.5's levels make three), not once per layer shape.
"""
from __future__ import annotations

import functools

import torch

from . import triton_gate

ROWS = 64        # pixels per tile
CG_BLOCK = 64    # channels of one group per tile (SD's GroupNorms: 32 groups of 4 to 40 channels)
C_BLOCK = 128    # channels per tile in the elementwise kernels
MAX_TILES = 1024  # tiles of one (sample, group) the finishing kernel merges: up to 65,536 pixels (a 2048 px image)


def applies(x: torch.Tensor, num_groups: int) -> bool:
    """A channels-last CUDA activation with pixels to normalise over (or the Triton interpreter on a
    CPU, for the tests), where triton_gate.py wants it (by default: in a graphed update)."""
    return (x.dim() == 4 and x.shape[2] * x.shape[3] > 1 and x.shape[1] % num_groups == 0
            and x.shape[1] // num_groups <= CG_BLOCK and triton_cdiv(x.shape[2] * x.shape[3], ROWS) <= MAX_TILES
            and x.is_contiguous(memory_format=torch.channels_last) and triton_gate.usable(x, "groupnorm"))


def group_norm_nhwc(x: torch.Tensor, num_groups: int, weight, bias, eps: float) -> torch.Tensor:
    """F.group_norm for a channels-last x (see `applies`); the output is channels-last too."""
    return _GroupNormNHWC.apply(x, num_groups, weight, bias, eps)


class _GroupNormNHWC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, num_groups, weight, bias, eps):
        k = _kernels()
        n, c, h, w = x.shape
        hw, cg = h * w, c // num_groups
        xv = x.permute(0, 2, 3, 1)  # [N, H, W, C], contiguous
        tiles = triton_cdiv(hw, ROWS)
        parts = torch.empty(3, n * num_groups, tiles, device=x.device, dtype=torch.float32)
        k.partial_stats[(n * num_groups, tiles)](xv, parts, hw, c, cg, num_groups, tiles, n * num_groups, ROWS=ROWS,
                                                  CG_BLOCK=CG_BLOCK)
        stats = torch.empty(2, n * num_groups, device=x.device, dtype=torch.float32)  # mean, rstd
        k.finish_stats[(n * num_groups,)](parts, stats, tiles, n * num_groups, eps, MAX_TILES=MAX_TILES)
        y = torch.empty_like(x)  # channels-last, as x
        wt = weight if weight is not None else x.new_ones(c)
        bt = bias if bias is not None else x.new_zeros(c)
        k.apply[(n, triton_cdiv(hw, ROWS), triton_cdiv(c, C_BLOCK))](
            xv, y.permute(0, 2, 3, 1), stats, wt, bt, hw, c, cg, num_groups, n * num_groups, ROWS=ROWS,
            C_BLOCK=C_BLOCK)
        ctx.save_for_backward(x, stats, wt)
        ctx.num_groups, ctx.has_weight, ctx.has_bias = num_groups, weight is not None, bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        k = _kernels()
        x, stats, wt = ctx.saved_tensors
        g = ctx.num_groups
        n, c, h, w = x.shape
        hw, cg = h * w, c // g
        dy = dy.contiguous(memory_format=torch.channels_last)
        xv, dyv = x.permute(0, 2, 3, 1), dy.permute(0, 2, 3, 1)
        tiles = triton_cdiv(hw, ROWS)
        sums = torch.empty(2, n * g, tiles, device=x.device, dtype=torch.float32)  # sum(g*xhat), sum(g)
        want_w = ctx.has_weight and ctx.needs_input_grad[2]
        want_b = ctx.has_bias and ctx.needs_input_grad[3]
        params = want_w or want_b  # LoRA and TI train no norm: no per-channel partials written then
        chan = torch.empty(2, n * tiles, c if params else 1, device=x.device, dtype=torch.float32)  # dy*xhat, dy
        k.partial_grads[(n * g, tiles)](xv, dyv, stats, wt, sums, chan, hw, c, cg, g, tiles, n, ROWS=ROWS,
                                        CG_BLOCK=CG_BLOCK, PARAM_GRADS=params)
        totals = sums.sum(dim=2)  # [2, N*G], fixed order
        dx = torch.empty_like(x)
        k.input_grad[(n, triton_cdiv(hw, ROWS), triton_cdiv(c, C_BLOCK))](
            xv, dyv, dx.permute(0, 2, 3, 1), stats, wt, totals, hw, c, cg, g, n * g, ROWS=ROWS, C_BLOCK=C_BLOCK)
        per_channel = chan.sum(dim=1) if params else None  # [2, C], each partial written once
        dw = per_channel[0].to(wt.dtype) if want_w else None
        db = per_channel[1].to(wt.dtype) if want_b else None
        return dx, None, dw, db, None


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=None)
def _kernels():
    """The Triton kernels (group_norm_triton.py), imported at the first use: importing triton costs a
    second, which CPU-only and WebUI-hosted runs never pay."""
    from . import group_norm_triton
    return group_norm_triton
