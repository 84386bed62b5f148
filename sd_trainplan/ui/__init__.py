"""gradio front ends, host-agnostic (gradio 3.41 and 4.x).

Imports are lazy so that `sd_trainplan.ui.app` can set gradio's environment (analytics off)
before gradio is first imported; `from sd_trainplan.ui import build_planner` still works.
"""
from typing import Any

__all__ = ["PlannerPanel", "UiHooks", "build_page", "build_planner", "build_planner_panel"]
_WHERE = {"PlannerPanel": "planner_panel", "build_planner_panel": "planner_panel", "build_page": "page",
          "build_planner": "page", "UiHooks": "hooks"}  # planner_panel.build_planner is the same page


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(name)
