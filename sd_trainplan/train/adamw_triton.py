"""The Triton kernels of bf16_weights.py (which says what they compute); imported only when used.
Every tensor is a flat buffer; offsets are 64-bit (SDXL's UNet has 2.6 billion weights)."""
import triton
import triton.language as tl


@triton.jit
def sum_squares(grad, parts, n, BLOCK: tl.constexpr):
    """parts[i]: the sum of the squares of block i of the bf16 gradients, in fp32."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    g = tl.load(grad + offs, mask=offs < n, other=0.0).to(tl.float32)
    tl.store(parts + pid, tl.sum(g * g, axis=0))


@triton.jit
def adamw_master(grad, master, exp_avg, exp_avg_sq, weight, scalars, n, beta1, beta2, eps, BLOCK: tl.constexpr):
    """One AdamW step on the fp32 masters from the bf16 gradients (times the clip coefficient), in
    the order of torch's fused AdamW (ATen's fused_adam_utils.cuh), and the bf16 copies written.
    scalars: lr x weight decay, lr / bias correction 1, sqrt(bias correction 2), the clip coefficient."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    lr_wd = tl.load(scalars)
    step_size = tl.load(scalars + 1)
    bc2_sqrt = tl.load(scalars + 2)
    coef = tl.load(scalars + 3)
    g = tl.load(grad + offs, mask=mask, other=0.0).to(tl.float32) * coef
    p = tl.load(master + offs, mask=mask, other=0.0)
    m = tl.load(exp_avg + offs, mask=mask, other=0.0)
    v = tl.load(exp_avg_sq + offs, mask=mask, other=0.0)
    p = p - lr_wd * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p = p - step_size * m / (tl.sqrt(v) / bc2_sqrt + eps)
    tl.store(master + offs, p, mask=mask)
    tl.store(exp_avg + offs, m, mask=mask)
    tl.store(exp_avg_sq + offs, v, mask=mask)
    tl.store(weight + offs, bf16_rounded(p), mask=mask)


@triton.jit
def bf16_rounded(x):
    """x rounded to the nearest bf16, ties to even, as torch rounds (and autocast's casts): spelled
    out in bits because Triton's interpreter truncates where its GPU conversion rounds."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
