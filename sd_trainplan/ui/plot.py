"""A small inline-SVG plot of the LR schedule the plan implies (pure Python, no gradio).

Drawn from `plan.schedule.curve`, the same math the trainer uses, so the picture is the
schedule that will run. SVG colours come from CSS classes (style.css), so the plot follows
the page's light or dark theme.
"""
from __future__ import annotations

from html import escape
from typing import List, Optional, Tuple

from ..plan import schedule as sched
from ..plan.quantity import fmt

W, H = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 14, 34


def _short(x: float) -> str:
    return fmt(float(f"{x:.3g}")) if x else "0"


def schedule_title(s: sched.Schedule) -> str:
    name = {"a1111": "WebUI schedule", "one_cycle": "one-cycle"}.get(s.name, s.name.replace("_", " "))
    mean = sched.mean_factor(s)
    warm = f", {s.warmup} warm-up" if s.warmup and s.name not in ("constant", "a1111", "cyclical", "one_cycle") else ""
    return (f"{name}{warm}: peak {_short(s.peak_lr)} over {s.total} updates; mean LR {mean * 100:.0f}% of the peak")


def lr_plot_html(s: Optional[sched.Schedule], missing: str = "") -> str:
    """The plot with its caption; a short note instead when the plan has no schedule yet."""
    if s is None:
        return ('<div class="stp-plot stp-plot-empty"><div class="stp-plot-title">LR schedule</div>'
                f'<p>{escape(missing or "The plot appears once the plan has a learning rate and a length.")}</p></div>')
    return (f'<div class="stp-plot"><div class="stp-plot-title">LR schedule <span>{escape(schedule_title(s))}'
            f'</span></div>{lr_svg(s)}</div>')


def lr_svg(s: sched.Schedule) -> str:
    pts = sched.curve(s, 240)
    total = max(1, s.total)
    top = max(lr for _, lr in pts) or s.peak_lr or 1.0
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def xy(step: float, lr: float) -> Tuple[float, float]:
        return LEFT + pw * step / total, TOP + ph * (1 - lr / top)

    line: List[str] = [f"{x:.1f},{y:.1f}" for x, y in (xy(st, lr) for st, lr in pts)]
    x0, y0 = xy(0, 0)
    x1, _ = xy(total, 0)
    area = f"M{x0:.1f},{y0:.1f} L" + " L".join(line) + f" L{x1:.1f},{y0:.1f} Z"
    out = [f'<svg class="stp-lr-svg" viewBox="0 0 {W} {H}" role="img" aria-label="learning rate by update"'
           ' xmlns="http://www.w3.org/2000/svg">']
    for frac in (0.0, 0.5, 1.0):  # horizontal grid lines with LR labels
        _, y = xy(0, top * frac)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(top * frac)}</text>')
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x, _ = xy(total * frac, 0)
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        out.append(f'<text class="tick" x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="{anchor}">'
                   f'{round(total * frac)}</text>')
    out.append(f'<text class="axis" x="{LEFT + pw / 2:.1f}" y="{H - 4}" text-anchor="middle">weight update</text>')
    if s.warmup and 0 < s.warmup < total and s.name not in ("constant", "a1111", "cyclical", "one_cycle"):
        x, _ = xy(s.warmup, 0)
        out.append(f'<line class="marker" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{y0:.1f}"/>')
        out.append(f'<text class="tick" x="{x + 4:.1f}" y="{TOP + 10}">warm-up</text>')
    out.append(f'<path class="area" d="{area}"/>')
    out.append(f'<polyline class="line" points="{" ".join(line)}"/>')
    out.append("</svg>")
    return "".join(out)
