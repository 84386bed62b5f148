"""Plain-text rendering of a plan for the terminal (the UI renders the same quantities as HTML)."""
from __future__ import annotations

import shutil
import textwrap
from typing import List

from .planner import GROUPS, PlanResult
from .quantity import Quantity, fmt


def value_text(q: Quantity) -> str:
    """A quantity's value as shown in every table: '—' when it cannot be computed yet."""
    v = q.value
    if v is None:
        return "—"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {value_text(Quantity(k, x, '', '', '', ''))}" for k, x in v.items()
                         if x is not None)
    text = fmt(v)
    return f"{text} {q.unit}".strip() if q.unit and not isinstance(v, (bool, str)) else text


def short_source(source: str) -> str:
    return source.split(" (")[0].split(":")[0]


def render_text(result: PlanResult, width: int = 0) -> str:
    width = width or min(120, shutil.get_terminal_size((100, 20)).columns)
    lines: List[str] = []
    if result.errors:
        return "\n".join(e.text(flag=True) for e in result.errors)
    for group, title in GROUPS.items():
        rows = [q for q in result.quantities.values() if q.group == group]
        if not rows:
            continue
        lines.append("")
        lines.append(f"== {title} ==")
        for q in rows:
            label = q.label or q.id
            lines.append(f"  {label[:44]:<44} {value_text(q)}")
            detail = f"{q.formula}  [{short_source(q.source)}]"
            lines.extend(textwrap.wrap(detail, width - 6, initial_indent="      ", subsequent_indent="      "))
    if result.warnings:
        lines.append("")
        lines.append("== Warnings ==")
        for w in result.warnings:
            text = f"{w.field}: {w.message}" if w.field else w.message
            lines.extend(textwrap.wrap(text, width - 4, initial_indent="  ! ", subsequent_indent="    "))
    return "\n".join(lines).lstrip("\n")
