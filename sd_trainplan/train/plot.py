"""Small line plots drawn with PIL (present in every host; no matplotlib needed): the LR range
test's curve with its bounds, and loss curves."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

Series = Tuple[str, Sequence[float], Sequence[float], Tuple[int, int, int]]
Mark = Tuple[float, str, Tuple[int, int, int]]


def _ticks(lo: float, hi: float, log: bool, n: int = 5) -> List[float]:
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10.0 ** e for e in range(a, b + 1) if lo <= 10.0 ** e <= hi] or [lo, hi]
    step = (hi - lo) / (n - 1) if hi > lo else 1.0
    return [lo + i * step for i in range(n)]


def _label(v: float) -> str:
    return f"{v:.0e}".replace("e-0", "e-") if (v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4)) else f"{v:.3g}"


def line_plot(series: Sequence[Series], title: str, xlabel: str, ylabel: str, xlog: bool = False,
              marks: Sequence[Mark] = (), size: Tuple[int, int] = (800, 480), bands: Sequence[Tuple[float, float]] = ()):
    from PIL import Image, ImageDraw
    W, H = size
    left, right, top, bottom = 80, 20, 40, 60
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    xs = [x for _, sx, sy, _ in series for x, y in zip(sx, sy) if y is not None and (not xlog or x > 0)]
    ys = [y for _, sx, sy, _ in series for x, y in zip(sx, sy) if y is not None and (not xlog or x > 0)]
    if not xs:
        d.text((left, top), f"{title}: no data", fill="black")
        return im
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    if x1 == x0:
        x1 = x0 * 2 if xlog else x0 + 1

    def px(x: float) -> float:
        f = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0)) if xlog else (x - x0) / (x1 - x0)
        return left + f * (W - left - right)

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom)

    for a, b in bands:
        d.rectangle((px(max(a, x0)), top, px(min(b, x1)), H - bottom), fill=(232, 244, 232))
    d.rectangle((left, top, W - right, H - bottom), outline=(120, 120, 120))
    for t in _ticks(x0, x1, xlog):
        d.line((px(t), H - bottom, px(t), H - bottom + 5), fill="black")
        d.text((px(t) - 18, H - bottom + 8), _label(t), fill="black")
    for t in _ticks(y0, y1, False):
        d.line((left - 5, py(t), left, py(t)), fill="black")
        d.text((5, py(t) - 6), _label(t), fill="black")
    d.text((W // 2 - 60, 10), title, fill="black")
    d.text((W // 2 - 40, H - 22), xlabel, fill="black")
    d.text((5, top - 22), ylabel, fill="black")
    for i, (name, sx, sy, color) in enumerate(series):
        pts = [(px(x), py(y)) for x, y in zip(sx, sy) if y is not None and (not xlog or x > 0)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for p in pts if len(pts) < 60 else []:
            d.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=color)
        d.line((W - right - 170, top + 10 + 16 * i, W - right - 150, top + 10 + 16 * i), fill=color, width=3)
        d.text((W - right - 145, top + 4 + 16 * i), name, fill="black")
    for x, name, color in marks:
        if x0 <= x <= x1:
            d.line((px(x), top, px(x), H - bottom), fill=color, width=1)
            d.text((px(x) + 3, top + 4 + 14 * (marks.index((x, name, color)) % 4) + 40), name, fill=color)
    return im


def ema(values: Sequence[Optional[float]], beta: float = 0.9) -> List[Optional[float]]:
    """Bias-corrected exponential moving average (fastai's smoothed loss)."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        n += 1
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** n))
    return out
