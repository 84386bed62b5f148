"""Registration with the WebUI (scripts/trainplan.py calls `register` when the WebUI loads it).

AUTOMATIC1111 1.10 (modules/script_callbacks.py, v1.10.1): on_ui_tabs -> [(blocks, title, elem_id)],
on_ui_settings -> opts.add_option, on_app_started(demo, app) -> FastAPI routes. Forge keeps the
same callbacks; its trainer hooks are forge_hooks.py, and it has no Train tab to apply a plan to.
"""
from __future__ import annotations

import importlib.util

TAB_TITLE = "Train Planner"
TAB_ID = "sd_trainplan"  # the WebUI gives the tab the element id "tab_sd_trainplan"


def is_forge() -> bool:
    return importlib.util.find_spec("modules_forge") is not None


def register() -> None:
    from modules import script_callbacks
    from . import api, settings
    script_callbacks.on_ui_settings(settings.add_settings)
    script_callbacks.on_ui_tabs(on_ui_tabs)
    script_callbacks.on_app_started(api.on_app_started)


def on_ui_tabs():
    from .hooks import make_hooks
    from .tab import build_tab
    return [(build_tab(make_hooks(), train_tab=not is_forge()), TAB_TITLE, TAB_ID)]
