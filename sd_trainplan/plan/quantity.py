"""One planned figure: its value, unit, the formula with numbers substituted, and its source.

Every number the planner shows is a `Quantity`. A figure whose inputs were not given
keeps its place with `value=None` and a formula text that names the missing input,
so nothing is silently left out of a table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Quantity:
    id: str
    value: Any  # int, float, bool, str, dict, or None when an input is missing
    unit: str
    formula: str
    source: str
    group: str
    label: str = ""

    def to_json(self) -> dict:
        return {"value": self.value, "unit": self.unit, "formula": self.formula,
                "source": self.source, "group": self.group, "label": self.label}


def missing(id: str, unit: str, needs: str, source: str, group: str, label: str = "") -> Quantity:
    """A figure that cannot be computed yet: its formula says which input it needs."""
    return Quantity(id, None, unit, f"needs {needs}", source, group, label)


def round_half_up(x: float) -> int:
    """Counts of steps and images: floor(x + 0.5), never Python's banker's round()."""
    return int(math.floor(x + 0.5))


def fmt(x: Any) -> str:
    """A number as it reads in a formula: integers plain, small/large floats in e-notation."""
    if x is None:
        return "?"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if x == 0:
            return "0"
        if x.is_integer() and abs(x) < 1e7:
            return str(int(x))
        ax = abs(x)
        if ax < 1e-3 or ax >= 1e6:
            mantissa, exp = f"{x:.4e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exp)}"
        return f"{x:.6g}"
    return str(x)
