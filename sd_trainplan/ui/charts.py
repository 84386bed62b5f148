"""Small inline-SVG line charts for the trainer panel (pure Python, no gradio, no matplotlib).

The loss curves of a run and the LR range test's curve are drawn here; the LR schedule plot
(plot.py) keeps its own simpler drawing. Colours come from CSS classes (style.css), so the
charts follow the page's light or dark theme; the legend is HTML above the chart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, List, Optional, Sequence, Tuple

from ..plan.quantity import fmt

W, H = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 22, 36


@dataclass(frozen=True)
class Line:
    name: str
    points: Sequence[Tuple[float, float]]   # (x, y), in drawing order
    css: str                                # stroke colour class, e.g. "stp-s-val"
    dots: bool = False                      # mark each point (sparse series such as validation)


@dataclass(frozen=True)
class Mark:
    x: float
    label: str
    css: str = "stp-m"


def short(x: float) -> str:
    """A tick label: 3 significant digits, e-notation for small numbers."""
    return fmt(float(f"{x:.3g}")) if x else "0"


def nice_ticks(lo: float, hi: float, n: int = 4) -> List[float]:
    """About n round values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out, v = [], first
    while v <= hi + 1e-9 * step:
        out.append(round(v / step) * step)
        v += step
    return out


def legend_html(lines: Sequence[Line], extra: str = "") -> str:
    items = "".join(f'<span class="stp-legend-item"><i class="{escape(l.css)}"></i>{escape(l.name)}</span>'
                    for l in lines if l.points)
    return f'<div class="stp-legend">{items}{extra}</div>'


def line_chart(lines: Sequence[Line], xlabel: str, aria: str, x_range: Optional[Tuple[float, float]] = None,
               band: Optional[Tuple[float, float]] = None, marks: Sequence[Mark] = (),
               x_label: Callable[[float], str] = short, empty: str = "waiting for the first points",
               size: Tuple[int, int] = (W, H)) -> str:
    """One SVG: grid, axes with round ticks, an optional shaded x band, vertical marks, the lines.
    `size`: the viewBox, about the width the chart gets on the page (so its text keeps its size)."""
    W, H = size
    pts = [p for l in lines for p in l.points if _finite(p)]
    out = [f'<svg class="stp-chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(aria)}"'
           ' xmlns="http://www.w3.org/2000/svg">']
    if not pts:
        out.append(f'<text class="stp-empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">{escape(empty)}</text>'
                   "</svg>")
        return "".join(out)
    x0, x1 = x_range or (min(p[0] for p in pts), max(p[0] for p in pts))
    if x1 <= x0:
        x1 = x0 + 1
    ys = [p[1] for p in pts]
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.08 or abs(y1) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + pw * (min(max(x, x0), x1) - x0) / (x1 - x0)

    def py(y: float) -> float:
        return TOP + ph * (1 - (y - y0) / (y1 - y0))

    if band is not None:
        a, b = px(band[0]), px(band[1])
        out.append(f'<rect class="stp-band" x="{a:.1f}" y="{TOP}" width="{max(1.0, b - a):.1f}" height="{ph}"/>')
    for t in nice_ticks(y0, y1):
        y = py(t)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(short(t))}</text>')
    for t in nice_ticks(x0, x1, 5):
        x = px(t)
        out.append(f'<line class="axis-tick" x1="{x:.1f}" y1="{TOP + ph}" x2="{x:.1f}" y2="{TOP + ph + 4}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">'
                   f'{escape(x_label(t))}</text>')
    out.append(f'<line class="axis" x1="{LEFT}" y1="{TOP + ph}" x2="{W - RIGHT}" y2="{TOP + ph}"/>')
    out.append(f'<text class="axis-label" x="{LEFT + pw / 2:.1f}" y="{H - 4}" text-anchor="middle">'
               f'{escape(xlabel)}</text>')
    for i, m in enumerate(marks):
        x = px(m.x)
        anchor = "end" if x > LEFT + pw * 0.8 else "start"
        dx = -4 if anchor == "end" else 4
        out.append(f'<g class="stp-mark {escape(m.css)}" data-mark="{escape(m.label.split()[0])}">'
                   f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ph}"/>'
                   f'<text x="{x + dx:.1f}" y="{TOP + 11 + 13 * (i % 4)}" text-anchor="{anchor}">'
                   f'{escape(m.label)}</text></g>')
    for line in lines:
        p = [(px(x), py(y)) for x, y in line.points if _finite((x, y))]
        if not p:
            continue
        cls = escape(line.css)
        if len(p) > 1:
            out.append(f'<polyline class="stp-line {cls}" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in p)}"/>')
        if line.dots or len(p) == 1:
            out.extend(f'<circle class="stp-dot {cls}" cx="{a:.1f}" cy="{b:.1f}" r="2.6"/>' for a, b in p)
    out.append("</svg>")
    return "".join(out)


def _finite(p: Tuple[float, float]) -> bool:
    return p[0] is not None and p[1] is not None and math.isfinite(p[0]) and math.isfinite(p[1])
