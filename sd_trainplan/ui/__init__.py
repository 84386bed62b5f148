"""gradio front ends, host-agnostic (gradio 3.41 and 4.x).

Imports are lazy so that `sd_trainplan.ui.app` can set gradio's environment (analytics off)
before gradio is first imported; `from sd_trainplan.ui import build_planner` still works.
"""
from typing import Any

__all__ = ["PlannerPanel", "build_planner", "build_planner_panel"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import planner_panel
        return getattr(planner_panel, name)
    raise AttributeError(name)
