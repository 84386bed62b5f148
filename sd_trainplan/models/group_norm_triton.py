"""The Triton kernels of group_norm_nhwc.py (which says what each computes); imported only when
they are used. Tensors are NHWC memory: element (n, pixel, channel) at n*HW*C + pixel*C + channel."""
import triton
import triton.language as tl


@triton.jit
def partial_stats(x, parts, HW, C, CG, G, TILES, NG, ROWS: tl.constexpr, CG_BLOCK: tl.constexpr):
    ng, t = tl.program_id(0), tl.program_id(1)
    n, grp = ng // G, ng % G
    rows = t * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, CG_BLOCK)
    mask = (rows < HW)[:, None] & (cols < CG)[None, :]
    offs = n.to(tl.int64) * HW * C + rows[:, None].to(tl.int64) * C + grp * CG + cols[None, :]
    v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
    count = (tl.minimum(HW - t * ROWS, ROWS) * CG).to(tl.float32)
    mean = tl.sum(tl.sum(v, axis=1), axis=0) / count
    d = tl.where(mask, v - mean, 0.0)
    m2 = tl.sum(tl.sum(d * d, axis=1), axis=0)
    base = ng * TILES + t
    tl.store(parts + base, count)
    tl.store(parts + NG * TILES + base, mean)
    tl.store(parts + 2 * NG * TILES + base, m2)


@triton.jit
def finish_stats(parts, stats, TILES, NG, eps, MAX_TILES: tl.constexpr):
    ng = tl.program_id(0)
    idx = tl.arange(0, MAX_TILES)  # Chan et al.: the (count, mean, M2) partials merged at once
    m = idx < TILES
    cnt = tl.load(parts + ng * TILES + idx, mask=m, other=0.0)
    mu = tl.load(parts + NG * TILES + ng * TILES + idx, mask=m, other=0.0)
    m2 = tl.load(parts + 2 * NG * TILES + ng * TILES + idx, mask=m, other=0.0)
    total = tl.sum(cnt, axis=0)
    mean = tl.sum(cnt * mu, axis=0) / total
    dm = tl.where(m, mu - mean, 0.0)
    var = tl.sum(m2 + cnt * dm * dm, axis=0) / total
    tl.store(stats + ng, mean)
    tl.store(stats + NG + ng, 1.0 / tl.sqrt(var + eps))


@triton.jit
def pixel_tile(stats, HW, C, CG, G, NG, ROWS: tl.constexpr, C_BLOCK: tl.constexpr):
    """The elementwise kernels' tile: ROWS pixels x C_BLOCK channels of one sample, where they are
    in memory, and each channel's group mean and rstd."""
    n, t, cb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = t * ROWS + tl.arange(0, ROWS)
    cols = cb * C_BLOCK + tl.arange(0, C_BLOCK)
    cmask = cols < C
    mask = (rows < HW)[:, None] & cmask[None, :]
    group = n * G + cols // CG
    mean = tl.load(stats + group, mask=cmask, other=0.0)
    rstd = tl.load(stats + NG + group, mask=cmask, other=0.0)
    offs = n.to(tl.int64) * HW * C + rows[:, None].to(tl.int64) * C + cols[None, :]
    return offs, mask, cmask, cols, group, mean, rstd


@triton.jit
def apply(x, y, stats, w, b, HW, C, CG, G, NG, ROWS: tl.constexpr, C_BLOCK: tl.constexpr):
    offs, mask, cmask, cols, group, mean, rstd = pixel_tile(stats, HW, C, CG, G, NG, ROWS, C_BLOCK)
    scale = rstd * tl.load(w + cols, mask=cmask, other=0.0).to(tl.float32)
    shift = tl.load(b + cols, mask=cmask, other=0.0).to(tl.float32) - mean * scale
    v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y + offs, (v * scale[None, :] + shift[None, :]).to(y.dtype.element_ty), mask=mask)


@triton.jit
def partial_grads(x, dy, stats, w, sums, chan, HW, C, CG, G, TILES, N, ROWS: tl.constexpr,
                  CG_BLOCK: tl.constexpr, PARAM_GRADS: tl.constexpr):
    ng, t = tl.program_id(0), tl.program_id(1)
    NG = N * G
    n, grp = ng // G, ng % G
    rows = t * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, CG_BLOCK)
    cmask = cols < CG
    mask = (rows < HW)[:, None] & cmask[None, :]
    offs = n.to(tl.int64) * HW * C + rows[:, None].to(tl.int64) * C + grp * CG + cols[None, :]
    v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
    d = tl.load(dy + offs, mask=mask, other=0.0).to(tl.float32)
    mean = tl.load(stats + ng)
    rstd = tl.load(stats + NG + ng)
    xhat = tl.where(mask, (v - mean) * rstd, 0.0)
    wg = tl.load(w + grp * CG + cols, mask=cmask, other=0.0).to(tl.float32)
    gw = d * wg[None, :]
    tl.store(sums + ng * TILES + t, tl.sum(tl.sum(gw * xhat, axis=1), axis=0))
    tl.store(sums + NG * TILES + ng * TILES + t, tl.sum(tl.sum(gw, axis=1), axis=0))
    if PARAM_GRADS:  # the norm's weight and bias train (Dreambooth): their partials, per channel
        row = (n * TILES + t).to(tl.int64) * C + grp * CG + cols
        tl.store(chan + row, tl.sum(d * xhat, axis=0), mask=cmask)
        tl.store(chan + N * TILES * C + row, tl.sum(d, axis=0), mask=cmask)


@triton.jit
def input_grad(x, dy, dx, stats, w, totals, HW, C, CG, G, NG, ROWS: tl.constexpr, C_BLOCK: tl.constexpr):
    offs, mask, cmask, cols, group, mean, rstd = pixel_tile(stats, HW, C, CG, G, NG, ROWS, C_BLOCK)
    s_gx = tl.load(totals + group, mask=cmask, other=0.0)
    s_g = tl.load(totals + NG + group, mask=cmask, other=0.0)
    wc = tl.load(w + cols, mask=cmask, other=0.0).to(tl.float32)
    m = (HW * CG).to(tl.float32)
    v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
    d = tl.load(dy + offs, mask=mask, other=0.0).to(tl.float32)
    xhat = (v - mean[None, :]) * rstd[None, :]
    out = rstd[None, :] * (d * wc[None, :] - (s_g[None, :] + xhat * s_gx[None, :]) / m)
    tl.store(dx + offs, out.to(dx.dtype.element_ty), mask=mask)
