"""Mirrors modules/script_callbacks.py (v1.10.1): registering ui_tabs / ui_settings / app_started
callbacks and the runners the WebUI calls. Left out: callback ordering by extension metadata."""
import os
from dataclasses import dataclass
from typing import Any

from modules import errors


@dataclass
class ScriptCallback:
    script: str
    callback: Any
    name: str = "unnamed"


callback_map = {"callbacks_ui_tabs": [], "callbacks_ui_settings": [], "callbacks_app_started": []}


def add_callback(callbacks, fun, *, name=None, category="unknown", filename=None):
    callbacks.append(ScriptCallback(filename or "unknown file", fun, f"{os.path.basename(filename or '?')}/{category}"))


def clear_callbacks():
    for v in callback_map.values():
        v.clear()


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name, category="ui_tabs")


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def ui_tabs_callback():
    res = []
    for c in callback_map["callbacks_ui_tabs"]:
        try:
            res += c.callback() or []
        except Exception:
            errors.report(f"Error executing callback ui_tabs_callback for {c.script}", exc_info=True)
    return res


def ui_settings_callback():
    for c in callback_map["callbacks_ui_settings"]:
        try:
            c.callback()
        except Exception:
            errors.report(f"Error executing callback ui_settings_callback for {c.script}", exc_info=True)


def app_started_callback(demo, app):
    for c in callback_map["callbacks_app_started"]:
        try:
            c.callback(demo, app)
        except Exception:
            errors.report(f"Error executing callback app_started_callback for {c.script}", exc_info=True)
