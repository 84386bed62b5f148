"""The Triton kernels of geglu_fused.py: rows of the projection [h | gate] (2 x INNER wide, contiguous)
in, rows of h * gelu(gate) (INNER wide) out; the backward writes both halves' gradients into one
contiguous [dh | dgate] row. GELU is the erf form (F.gelu's default, what diffusers' GEGLU uses)."""
import triton
import triton.language as tl

SQRT_HALF = tl.constexpr(0.7071067811865476)  # globals a kernel reads must be constexpr
INV_SQRT_2PI = tl.constexpr(0.3989422804014327)


@triton.jit
def halves(p, ROWS_N, INNER, ROWS: tl.constexpr, COLS: tl.constexpr):
    """This program's tile: h and gate (fp32), where they are in p, where the output's element is,
    and which elements exist."""
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.program_id(1) * COLS + tl.arange(0, COLS)
    mask = (r < ROWS_N)[:, None] & (c < INNER)[None, :]
    src = r[:, None].to(tl.int64) * (2 * INNER) + c[None, :]
    dst = r[:, None].to(tl.int64) * INNER + c[None, :]
    h = tl.load(p + src, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(p + src + INNER, mask=mask, other=0.0).to(tl.float32)
    return h, g, src, dst, mask


@triton.jit
def forward(p, y, ROWS_N, INNER, ROWS: tl.constexpr, COLS: tl.constexpr):
    h, g, src, dst, mask = halves(p, ROWS_N, INNER, ROWS, COLS)
    out = h * (0.5 * g * (1.0 + tl.erf(g * SQRT_HALF)))
    tl.store(y + dst, out.to(y.dtype.element_ty), mask=mask)


@triton.jit
def backward(p, dy, dp, ROWS_N, INNER, ROWS: tl.constexpr, COLS: tl.constexpr):
    h, g, src, dst, mask = halves(p, ROWS_N, INNER, ROWS, COLS)
    d = tl.load(dy + dst, mask=mask, other=0.0).to(tl.float32)
    cdf = 0.5 * (1.0 + tl.erf(g * SQRT_HALF))
    pdf = INV_SQRT_2PI * tl.exp(-0.5 * g * g)
    tl.store(dp + src, (d * g * cdf).to(dp.dtype.element_ty), mask=mask)
    tl.store(dp + src + INNER, (d * h * (cdf + g * pdf)).to(dp.dtype.element_ty), mask=mask)
