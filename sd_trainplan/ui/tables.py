"""The plan as HTML: grouped tables (one row per quantity) and the summary cards.

Pure Python (no gradio). Every row is `<tr data-quantity="ID">` with the value in
`<td class="value">` and the formula and the source in cells of their own, so the
page can be scripted and tested; the same `PlanResult` feeds the CLI's text tables.
"""
from __future__ import annotations

from html import escape
from typing import Iterable, List, Optional

from ..plan import GROUPS, PlanResult, Quantity
from ..plan.quantity import fmt
from ..plan.render import short_source, value_text

# The figures a person looks at first, shown as cards above the tables.
CARDS = (("planned_updates", "Weight updates"), ("epochs", "Epochs"), ("planned_lr", "Learning rate"),
         ("effective_batch", "Effective batch"), ("images_seen", "Images seen"), ("class_images", "Class images"))


def formula_html(text: str) -> str:
    """A formula as it reads best: multiplication as x -> ×, 'needs ...' set apart."""
    out = escape(text).replace(" x ", " × ")
    return out


def source_label(source: str, limit: int = 30) -> str:
    """The source's short name ('seed 000', 'AUTOMATIC1111 v1.10.1 …'); the full text goes in a tooltip."""
    short = short_source(source)
    if len(short) <= limit:
        return short
    words: List[str] = []
    for w in short.split():
        if len(" ".join(words + [w])) > limit:
            break
        words.append(w)
    return " ".join(words) + " …"


def value_html(q: Quantity) -> str:
    v = q.value
    if v is None:
        return '<span class="stp-none">—</span>'
    if isinstance(v, dict):
        items = "".join(f"<li><span>{escape(str(k))}</span> {escape(fmt(x))}</li>" for k, x in v.items()
                        if x is not None)
        unit = f' <span class="stp-unit">{escape(q.unit)}</span>' if q.unit else ""
        return f'<ul class="stp-kv">{items}</ul>{unit}'
    if isinstance(v, bool):
        return f'<span class="stp-num">{"yes" if v else "no"}</span>'
    if isinstance(v, str):
        return f'<span class="stp-num stp-text">{escape(v)}</span>'
    text = value_text(q)
    num, _, unit = text.partition(" ")
    unit_html = f' <span class="stp-unit">{escape(unit)}</span>' if unit else ""
    return f'<span class="stp-num">{escape(num)}</span>{unit_html}'


def row_html(q: Quantity) -> str:
    cls = ' class="stp-missing"' if q.value is None else ""
    return (f'<tr data-quantity="{escape(q.id)}"{cls}>'
            f'<td class="label">{escape(q.label or q.id)}<code>{escape(q.id)}</code></td>'
            f'<td class="value">{value_html(q)}</td>'
            f'<td class="formula">{formula_html(q.formula)}</td>'
            f'<td class="source" title="{escape(q.source)}">{escape(source_label(q.source))}</td></tr>')


def tables_html(result: PlanResult) -> str:
    """Every quantity, grouped by plan.GROUPS with their titles, in the planner's order."""
    parts = ['<div class="stp-tables">']
    for group, title in GROUPS.items():
        rows = [q for q in result.quantities.values() if q.group == group]
        if not rows:
            continue
        known = sum(1 for q in rows if q.value is not None)
        parts.append(
            f'<details class="stp-group" data-group="{group}" open><summary><span class="stp-group-title">'
            f'{escape(title)}</span><span class="stp-count">{known} of {len(rows)} computed</span></summary>'
            '<table class="stp-table"><thead><tr><th>Figure</th><th>Value</th><th>Formula, with your numbers</th>'
            '<th>Source</th></tr></thead><tbody>' + "".join(row_html(q) for q in rows) + "</tbody></table></details>")
    parts.append("</div>")
    return "".join(parts)


def cards_html(result: PlanResult, method: Optional[str] = None) -> str:
    """The headline figures as cards: value big, formula in the tooltip."""
    cards = []
    for id, title in _cards_for(method):
        q = result.quantities.get(id)
        if q is None:
            continue
        cards.append(f'<div class="stp-card" data-card="{id}" title="{escape(q.formula)}">'
                     f'<div class="stp-card-title">{escape(title)}</div>'
                     f'<div class="stp-card-value">{value_html(q)}</div></div>')
    return '<div class="stp-cards">' + "".join(cards) + "</div>"


def _cards_for(method: Optional[str]) -> Iterable:
    for id, title in CARDS:
        if id == "class_images" and method != "dreambooth":
            continue
        yield id, title
