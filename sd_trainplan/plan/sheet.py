"""The sheet the planner fills: quantities in order, plus warnings tied to a field."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .quantity import Quantity


@dataclass(frozen=True)
class Warning_:
    field: Optional[str]
    message: str

    def to_json(self) -> dict:
        return {"field": self.field, "message": self.message}


class Sheet:
    """Collects quantities of one group at a time; `value(id)` reads an earlier one."""

    def __init__(self) -> None:
        self.quantities: Dict[str, Quantity] = {}
        self.warnings: List[Warning_] = []
        self.group = ""
        self.source = ""

    def section(self, group: str, source: str) -> "Sheet":
        self.group, self.source = group, source
        return self

    def put(self, id: str, value: Any, unit: str, formula: str, label: str = "",
            source: Optional[str] = None) -> Any:
        self.quantities[id] = Quantity(id, value, unit, formula, source or self.source, self.group, label)
        return value

    def missing(self, id: str, unit: str, needs: str, label: str = "", source: Optional[str] = None) -> None:
        self.put(id, None, unit, f"needs {needs}", label, source)

    def value(self, id: str) -> Any:
        q = self.quantities.get(id)
        return None if q is None else q.value

    def warn(self, field: Optional[str], message: str) -> None:
        self.warnings.append(Warning_(field, message))
